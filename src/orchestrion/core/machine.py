"""The execution state machine: events in, records and commands out. No I/O, no clock, no asyncio.

One ``ExecutionMachine`` holds the state of one execution. ``apply(event)`` mutates it and
returns a ``Step``: the records to persist (in order) and the commands to carry out after they
are committed. Work per event is proportional to the out-degree of the node concerned: each
node keeps counters of how its parents ended, so fan-in is decided by arithmetic, once, when
the counter says so, and never by scanning the graph.

Semantics:
- A node becomes ready when its trigger rule is satisfied; ``all_success`` (the default) skips
  it as soon as a parent fails or is skipped, and skipping propagates.
- A failed attempt is retried under the node's retry policy (the delay is drawn from ``rng``);
  when attempts run out the node fails, its dependents are skipped, independent branches go on.
- When every node is final the execution completes, or, if a node failed, runs the compensation
  handlers of completed and failed nodes one by one in reverse topological order (saga) and
  then fails.
- Cancel marks every live node cancelled at once; pause holds newly ready nodes back.
- A retry runs again what failed, was cancelled or was skipped because of a failure, never
  what a decision ruled out: a child a condition did not choose (``branch_not_taken``) and a
  node whose ``when:`` was false (``condition_false``) stay skipped unless the deciding node
  itself runs again (a rerun from it or from above it).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from orchestrion.core.backoff import retry_delay, should_retry
from orchestrion.core.events import (
    CancelNode,
    CancelRequested,
    Command,
    CompensationFailed,
    CompensationSucceeded,
    Dispatch,
    ErrorInfo,
    Event,
    ExecutionFinished,
    ExecutionTimedOut,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
    PauseRequested,
    Record,
    ResumeRequested,
    RetryRequested,
    RunCompensation,
    ScheduleTimer,
    Started,
    TimerFired,
    TimerKind,
    WaitResolved,
)
from orchestrion.core.plan import Plan
from orchestrion.core.reasons import DECISION_SKIPS, SkipReason, WaitReason
from orchestrion.core.record_types import NODE_RECORD_OF_STATE, RecordType
from orchestrion.core.states import (
    ACTIVE_NODE_STATES,
    FINAL_EXECUTION_STATES,
    ExecutionStatus,
    NodeState,
)
from orchestrion.definition.model import TriggerRule

__all__ = ["ExecutionMachine", "NodeRun", "Step"]

_PENDING = NodeState.PENDING
_QUEUED = NodeState.QUEUED
_RUNNING = NodeState.RUNNING
_WAITING = NodeState.WAITING
_COMPLETED = NodeState.COMPLETED
_FAILED = NodeState.FAILED
_SKIPPED = NodeState.SKIPPED
_CANCELLED = NodeState.CANCELLED
_COMPENSATED = NodeState.COMPENSATED

PHASE_RUN = "run"
PHASE_COMPENSATE = "compensate"

_RETRY = WaitReason.RETRY
_BRANCH_NOT_TAKEN = SkipReason.BRANCH_NOT_TAKEN


@dataclass(slots=True)
class NodeRun:
    """The live state of one node in one execution."""

    state: NodeState = NodeState.PENDING
    attempt: int = 0
    ok_parents: int = 0
    failed_parents: int = 0
    done_parents: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    error: dict[str, Any] | None = None
    wait_reason: str | None = None  # why it waits; once skipped, why it was skipped
    wake_at: float | None = None
    held: bool = False  # ready, but held back by pause or the concurrency limit
    compensation: str | None = None  # None, "done", "failed"


@dataclass(slots=True)
class Step:
    """What one event produced."""

    records: list[Record] = field(default_factory=list)
    commands: list[Command] = field(default_factory=list)


class ExecutionMachine:
    """State of one execution and the rules that move it. See the module docstring."""

    __slots__ = (
        "_active",
        "_compensation_queue",
        "_failed_count",
        "_held",
        "_parked",
        "_rng",
        "_step",
        "_unfinished",
        "error",
        "execution_id",
        "nodes",
        "phase",
        "plan",
        "status",
    )

    def __init__(
        self,
        plan: Plan,
        execution_id: str = "",
        *,
        rng: random.Random | None = None,
        status: ExecutionStatus = ExecutionStatus.PENDING,
    ) -> None:
        self.plan = plan
        self.execution_id = execution_id
        self.nodes = [NodeRun() for _ in plan.ids]
        self.status = status
        self.phase = PHASE_RUN
        self.error: dict[str, Any] | None = None
        self._rng = rng or random.Random()
        self._active = 0  # nodes queued, running or waiting
        self._parked = 0  # nodes waiting on a person or a timer (not a retry backoff)
        self._unfinished = len(plan.ids)  # nodes not in a final state
        self._failed_count = 0
        self._held: list[int] = []
        self._compensation_queue: list[int] = []
        self._step = Step()

    # ------------------------------------------------------------------ public

    @property
    def finished(self) -> bool:
        return self.status in FINAL_EXECUTION_STATES

    def node_state(self, node_id: str) -> NodeState:
        return self.nodes[self.plan.index[node_id]].state

    def apply(self, event: Event) -> Step:
        """Apply ``event``; return what it produced (nothing for a stale or irrelevant event)."""
        self._step = step = Step()
        node = getattr(event, "node", None)
        if node is not None and node not in self.plan.index:
            return step  # not a node of this workflow (a stray or corrupted message)
        match event:
            case NodeSucceeded():
                self._on_succeeded(event)
            case NodeStarted():
                self._on_started(event)
            case NodeFailed():
                self._on_failed(event)
            case Started():
                self._on_start(event)
            case NodeSkipped():
                self._on_skipped(event)
            case NodeWaiting():
                self._on_waiting(event)
            case WaitResolved():
                self._on_wait_resolved(event)
            case TimerFired():
                self._on_timer(event)
            case CancelRequested():
                self._on_cancel(event)
            case PauseRequested():
                self._on_pause(event)
            case ResumeRequested():
                self._on_resume(event)
            case RetryRequested():
                self._on_retry(event)
            case ExecutionTimedOut():
                self._on_timeout(event)
            case CompensationSucceeded():
                self._on_compensated(event)
            case CompensationFailed():
                self._on_compensation_failed(event)
        self._update_waiting_status(event.at)
        return step

    def restore(
        self,
        status: ExecutionStatus,
        phase: str,
        nodes: dict[str, NodeRun],
        error: dict[str, Any] | None = None,
    ) -> None:
        """Load persisted state (after a restart). Counters are recomputed from node states."""
        self.status = status
        self.phase = phase or PHASE_RUN
        self.error = error
        for node_id, run in nodes.items():
            i = self.plan.index.get(node_id)
            if i is not None:
                self.nodes[i] = run
        self._recount()

    def recover(self, at: float) -> Step:
        """After ``restore``: re-issue what was in flight when the process stopped.

        Queued and running attempts are dispatched again with the same attempt number (so their
        idempotency key is unchanged), timers are scheduled again, pending nodes whose
        dependencies are settled are decided, and an interrupted compensation carries on.
        """
        self._step = step = Step()
        if self.finished or self.status is ExecutionStatus.PENDING:
            return step
        step.records.append(Record(type=RecordType.EXECUTION_RECOVERED, at=at, status=self.status))
        plan = self.plan
        for i in plan.topo_order:
            run = self.nodes[i]
            if run.state is _QUEUED or run.state is _RUNNING:
                # In flight before the stop: pause only holds back newly ready nodes, so the
                # attempt runs again now, with the same attempt number (same idempotency key).
                woken = run.wait_reason is not None and run.wait_reason != _RETRY
                step.commands.append(Dispatch(plan.ids[i], run.attempt, woken=woken))
            elif run.state is _WAITING and run.wake_at is not None:
                kind = TimerKind.RETRY if run.wait_reason == _RETRY else TimerKind.WAKE
                step.commands.append(ScheduleTimer(plan.ids[i], run.attempt, run.wake_at, kind))
        if self.phase == PHASE_COMPENSATE:
            self._begin_compensation(at, resume=True)
        else:
            self._decide_pending(at)
            self._release_held(at)
            self._maybe_finish(at)
        self._update_waiting_status(at)
        return step

    # ------------------------------------------------------------------ handlers

    def _on_start(self, event: Started) -> None:
        if self.status is not ExecutionStatus.PENDING:
            return
        self.status = ExecutionStatus.RUNNING
        self._record_execution(RecordType.EXECUTION_STARTED, event.at)
        for i in self.plan.roots:
            self._ready(i, event.at)
        self._release_held(event.at)
        self._maybe_finish(event.at)

    def _on_started(self, event: NodeStarted) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if run.attempt != event.attempt or run.state is not _QUEUED:
            return
        run.state = _RUNNING
        woken = run.wait_reason is not None and run.wait_reason != _RETRY
        if run.started_at is None or not woken:
            # A node woken from its own wait (a delay, an approval's timeout) goes on with the
            # same attempt: its start is the attempt's first, and the wait is part of its time.
            run.started_at = event.at
        self._record_node(RecordType.NODE_STARTED, i, event.at)

    def _on_succeeded(self, event: NodeSucceeded) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if not self._is_current(run, event.attempt):
            return
        self._complete(i, event.at, event.output)

    @staticmethod
    def _is_current(run: NodeRun, attempt: int) -> bool:
        """Whether a result for ``attempt`` may still change the node: the attempt is live and
        has not already ended (an attempt in retry backoff has failed; more news is stale)."""
        if run.attempt != attempt or run.state not in ACTIVE_NODE_STATES:
            return False
        return not (run.state is _WAITING and run.wait_reason == _RETRY)

    def _unpark(self, run: NodeRun, at: float) -> None:
        """``run`` stops waiting on a person or a timer (a retry backoff is not such a wait)."""
        if run.state is _WAITING and run.wait_reason != _RETRY:
            self._parked -= 1
            self._leave_waiting_status(at)

    def _complete(self, i: int, at: float, output: Any) -> None:
        run = self.nodes[i]
        self._unpark(run, at)
        if run.started_at is None:
            run.started_at = at
        run.state = _COMPLETED
        run.finished_at = at
        run.error = None
        run.wait_reason = None
        run.wake_at = None
        self._active -= 1
        self._unfinished -= 1
        record = self._record_node(RecordType.NODE_COMPLETED, i, at)
        record.output = output
        record.has_output = True
        self._settle_children(i, at, self._not_taken(i, output))
        self._release_held(at)
        self._maybe_finish(at)

    def _not_taken(self, i: int, output: Any) -> frozenset[int]:
        """Children of a condition node that its output did not choose (they are skipped)."""
        if not self.plan.branching[i]:
            return frozenset()
        chosen = output.get("branches") if isinstance(output, dict) else None
        names = set(chosen) if isinstance(chosen, list) else set()
        return frozenset(c for c in self.plan.children[i] if self.plan.ids[c] not in names)

    def _on_failed(self, event: NodeFailed) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if not self._is_current(run, event.attempt):
            return
        self._fail_attempt(i, event.at, event.error)

    def _fail_attempt(self, i: int, at: float, error: ErrorInfo) -> None:
        run = self.nodes[i]
        self._unpark(run, at)
        policy = self.plan.retry[i]
        run.error = error.to_dict()
        if run.started_at is None:
            run.started_at = at
        if self.phase == PHASE_RUN and should_retry(
            policy, run.attempt, error.category, error.transient
        ):
            delay = retry_delay(policy, run.attempt, self._rng.random())
            run.state = _WAITING
            run.wait_reason = _RETRY
            run.wake_at = at + delay
            record = self._record_node(RecordType.NODE_RETRY_SCHEDULED, i, at)
            record.data = {"delay": round(delay, 6), "error": run.error}
            self._step.commands.append(ScheduleTimer(self.plan.ids[i], run.attempt, run.wake_at))
            return
        run.state = _FAILED
        run.finished_at = at
        run.wait_reason = None
        run.wake_at = None
        self._active -= 1
        self._unfinished -= 1
        self._failed_count += 1
        record = self._record_node(RecordType.NODE_FAILED, i, at)
        record.data = {"error": run.error}
        self._settle_children(i, at)
        self._release_held(at)
        self._maybe_finish(at)

    def _on_skipped(self, event: NodeSkipped) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if not self._is_current(run, event.attempt):
            return
        self._unpark(run, event.at)
        self._active -= 1
        self._skip(i, event.at, event.reason)
        self._release_held(event.at)
        self._maybe_finish(event.at)

    def _on_waiting(self, event: NodeWaiting) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if run.attempt != event.attempt or run.state not in (_QUEUED, _RUNNING):
            return
        run.state = _WAITING
        run.wait_reason = event.reason
        run.wake_at = event.wake_at
        if event.reason != _RETRY:
            self._parked += 1
        if run.started_at is None:
            run.started_at = event.at
        record = self._record_node(RecordType.NODE_WAITING, i, event.at)
        record.data = {"reason": event.reason, **(event.data or {})}
        if event.wake_at is not None:
            self._step.commands.append(
                ScheduleTimer(self.plan.ids[i], run.attempt, event.wake_at, TimerKind.WAKE)
            )
        self._update_waiting_status(event.at)

    def _on_wait_resolved(self, event: WaitResolved) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if run.attempt != event.attempt or run.state is not _WAITING or run.wait_reason == _RETRY:
            return
        self._leave_waiting_status(event.at)
        if event.error is not None:
            self._fail_attempt(i, event.at, event.error)
        else:
            self._complete(i, event.at, event.output)

    def _on_timer(self, event: TimerFired) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if run.attempt != event.attempt or run.state is not _WAITING:
            return
        if event.kind == TimerKind.RETRY and run.wait_reason == _RETRY:
            if self.status is ExecutionStatus.PAUSED:
                run.held = True
                self._held.append(i)
                return
            self._active -= 1
            self._dispatch(i, event.at)
        elif event.kind == TimerKind.WAKE and run.wait_reason != _RETRY:
            # The node's own wait ran out (approval timeout, delay): its handler decides what
            # that means, so it runs again with the same attempt.
            # wait_reason stays set while queued: a restart then still knows it was woken.
            self._unpark(run, event.at)
            run.state = _QUEUED
            record = self._record_node(RecordType.NODE_WOKEN, i, event.at)
            record.data = {"reason": run.wait_reason}
            self._step.commands.append(Dispatch(self.plan.ids[i], run.attempt, woken=True))

    def _on_cancel(self, event: CancelRequested) -> None:
        if self.finished:
            return
        self._stop_all(event.at, _CANCELLED, reason=event.reason)
        self._compensation_queue = []  # a compensation still out is abandoned; its result is stale
        self.status = ExecutionStatus.CANCELLED
        self.error = {"category": "cancelled", "message": event.reason}
        self._record_execution(
            RecordType.EXECUTION_CANCELLED, event.at, data={"reason": event.reason}
        )
        self._step.commands.append(ExecutionFinished(self.status))

    def _on_timeout(self, event: ExecutionTimedOut) -> None:
        if self.finished or self.phase == PHASE_COMPENSATE:
            return
        if self.status is ExecutionStatus.PENDING:
            return
        error = ErrorInfo("timeout", "execution exceeded its timeout", transient=False)
        self.error = error.to_dict()
        self._stop_all(event.at, _FAILED, reason=error.message, error=error)
        self._maybe_finish(event.at)

    def _on_pause(self, event: PauseRequested) -> None:
        if self.finished or self.status is ExecutionStatus.PAUSED:
            return
        if self.status is ExecutionStatus.PENDING:
            return
        self.status = ExecutionStatus.PAUSED
        self._record_execution(RecordType.EXECUTION_PAUSED, event.at)

    def _on_resume(self, event: ResumeRequested) -> None:
        if self.status is not ExecutionStatus.PAUSED:
            return
        self.status = ExecutionStatus.RUNNING
        self._record_execution(RecordType.EXECUTION_RESUMED, event.at)
        self._release_held(event.at)
        self._update_waiting_status(event.at)
        self._maybe_finish(event.at)

    def _on_retry(self, event: RetryRequested) -> None:
        rerun: set[int] = set()
        if event.node is not None:
            if not self.finished:
                return
            rerun = self._downstream(self.plan.index[event.node])
        elif self.status not in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
            return
        self.status = ExecutionStatus.RUNNING
        self.phase = PHASE_RUN
        self.error = None
        self._record_execution(
            RecordType.EXECUTION_RETRIED,
            event.at,
            data={"node": event.node} if event.node else None,
        )
        for i, run in enumerate(self.nodes):
            if self._runs_again(i, rerun):
                run.state = _PENDING
                run.error = None
                run.started_at = None
                run.finished_at = None
                run.wait_reason = None
                run.wake_at = None
                run.held = False
                run.compensation = None
                self._record_node(RecordType.NODE_RESET, i, event.at)
            elif run.compensation is not None:
                # A failed compensation is tried again if the retried execution fails again.
                run.compensation = None
                self._record_node(RecordType.NODE_COMPENSATION_RESET, i, event.at)
        self._recount()
        self._decide_pending(event.at)
        self._release_held(event.at)
        self._maybe_finish(event.at)

    def _runs_again(self, i: int, rerun: set[int]) -> bool:
        """Whether a retry resets node ``i`` (``rerun``: the nodes a rerun asks for).

        A decision skip stays unless its decider runs again: for ``branch_not_taken`` a
        condition parent in ``rerun``; for ``condition_false`` the node itself (its ``when:``
        reads upstream outputs, which a rerun may change).
        """
        run = self.nodes[i]
        decided = run.state is _SKIPPED and run.wait_reason in DECISION_SKIPS
        if i not in rerun:
            return run.state is not _COMPLETED and not decided
        if decided and run.wait_reason == _BRANCH_NOT_TAKEN:
            plan = self.plan
            return any(plan.branching[p] and p in rerun for p in plan.parents[i])
        return True

    def _downstream(self, start: int) -> set[int]:
        """``start`` and every node that depends on it, directly or not."""
        seen = {start}
        stack = [start]
        while stack:
            for child in self.plan.children[stack.pop()]:
                if child not in seen:
                    seen.add(child)
                    stack.append(child)
        return seen

    def _on_compensated(self, event: CompensationSucceeded) -> None:
        i = self.plan.index[event.node]
        if self.phase != PHASE_COMPENSATE or not self._compensation_queue:
            return
        if self._compensation_queue[0] != i:
            return
        self._compensation_queue.pop(0)
        run = self.nodes[i]
        run.compensation = "done"
        run.state = _COMPENSATED
        self._record_node(RecordType.NODE_COMPENSATED, i, event.at)
        self._next_compensation(event.at)

    def _on_compensation_failed(self, event: CompensationFailed) -> None:
        i = self.plan.index[event.node]
        if self.phase != PHASE_COMPENSATE or not self._compensation_queue:
            return
        if self._compensation_queue[0] != i:
            return
        self._compensation_queue.pop(0)
        run = self.nodes[i]
        run.compensation = "failed"
        record = self._record_node(RecordType.NODE_COMPENSATION_FAILED, i, event.at)
        record.data = {"error": event.error.to_dict()}
        self._next_compensation(event.at)

    # ------------------------------------------------------------------ mechanics

    def _ready(self, i: int, at: float) -> None:
        """Node ``i`` may run: dispatch it, or hold it back while paused or under a limit.

        Under a concurrency limit every ready node is held, and ``_release_held`` (called by
        whoever made it ready) dispatches by priority, so nodes that become ready together
        start highest priority first.
        """
        run = self.nodes[i]
        if self.status is ExecutionStatus.PAUSED or self.plan.spec.concurrency is not None:
            if not run.held:
                run.held = True
                self._held.append(i)
            return
        self._dispatch(i, at)

    def _dispatch(self, i: int, at: float) -> None:
        run = self.nodes[i]
        run.held = False
        run.attempt += 1
        run.state = _QUEUED
        run.wait_reason = None
        run.wake_at = None
        self._active += 1
        self._record_node(RecordType.NODE_QUEUED, i, at)
        self._step.commands.append(Dispatch(self.plan.ids[i], run.attempt))

    def _release_held(self, at: float) -> None:
        if not self._held or self.status is ExecutionStatus.PAUSED or self.finished:
            return
        limit = self.plan.spec.concurrency
        held = self._held
        # Highest priority first, then definition (topological) order.
        held.sort(key=lambda n: (-self.plan.nodes[n].priority, self.plan.topo_rank[n]))
        kept: list[int] = []
        for i in held:
            run = self.nodes[i]
            if not run.held or (run.state is not _PENDING and run.state not in ACTIVE_NODE_STATES):
                continue
            if run.state in ACTIVE_NODE_STATES:
                # A retry that came due while paused holds its slot already: it goes even at
                # the limit (waiting for a free slot could wait forever).
                self._active -= 1
                self._dispatch(i, at)
            elif limit is None or self._active < limit:
                self._dispatch(i, at)
            else:
                kept.append(i)
        self._held = kept

    def _skip(self, i: int, at: float, reason: str) -> None:
        """Skip ``i`` and everything downstream that the skip decides, iteratively."""
        stack = [(i, reason)]
        while stack:
            n, why = stack.pop()
            run = self.nodes[n]
            if run.state is not _PENDING and run.state not in ACTIVE_NODE_STATES:
                continue
            run.state = _SKIPPED
            run.finished_at = at
            run.held = False
            run.wait_reason = why
            run.wake_at = None
            self._unfinished -= 1
            record = self._record_node(RecordType.NODE_SKIPPED, n, at)
            record.data = {"reason": why}
            for child in self._settle_counts(n):
                decision = self._decide(child)
                if decision == "run":
                    self._ready(child, at)
                elif decision is not None:
                    stack.append((child, decision))

    def _settle_children(self, i: int, at: float, not_taken: frozenset[int] = frozenset()) -> None:
        for child in self.plan.children[i]:
            if child in not_taken and self.nodes[child].state is _SKIPPED:
                self._mark_not_taken(child, at)
        for child in self._settle_counts(i):
            run = self.nodes[child]
            if run.state is not _PENDING or run.held:
                continue  # decided meanwhile by a sibling's skip cascade: fan-in fires once
            decision = _BRANCH_NOT_TAKEN if child in not_taken else self._decide(child)
            if decision == "run":
                self._ready(child, at)
            elif decision is not None:
                self._skip(child, at, decision)

    def _mark_not_taken(self, i: int, at: float) -> None:
        """A node skipped for another reason (a failed parent) that the condition did not
        choose either: name the decision, which a retry keeps, rather than the failure."""
        run = self.nodes[i]
        if run.wait_reason == _BRANCH_NOT_TAKEN:
            return
        run.wait_reason = _BRANCH_NOT_TAKEN
        record = self._record_node(RecordType.NODE_SKIPPED, i, at)
        record.data = {"reason": _BRANCH_NOT_TAKEN}

    def _settle_counts(self, i: int) -> list[int]:
        """Count node ``i``'s outcome in its children; return the children still pending."""
        state = self.nodes[i].state
        ok = state is _COMPLETED
        failed = state is _FAILED
        pending = []
        for child in self.plan.children[i]:
            run = self.nodes[child]
            run.done_parents += 1
            if ok:
                run.ok_parents += 1
            elif failed:
                run.failed_parents += 1
            if run.state is _PENDING and not run.held:
                pending.append(child)
        return pending

    def _decide(self, i: int) -> str | None:
        """``"run"``, a skip reason, or None (not decided yet), from the parent counters."""
        run = self.nodes[i]
        total = len(self.plan.parents[i])
        rule = self.plan.trigger_rule[i]
        all_done = run.done_parents == total
        if rule is TriggerRule.ALL_SUCCESS:
            if run.failed_parents:
                return SkipReason.UPSTREAM_FAILED
            if run.done_parents != run.ok_parents:
                return SkipReason.UPSTREAM_SKIPPED
            return "run" if all_done else None
        if rule is TriggerRule.ALL_DONE:
            return "run" if all_done else None
        if rule is TriggerRule.NONE_FAILED:
            if run.failed_parents:
                return SkipReason.UPSTREAM_FAILED
            return "run" if all_done else None
        if rule is TriggerRule.ONE_SUCCESS:
            if run.ok_parents:
                return "run"
            return SkipReason.NO_UPSTREAM_SUCCESS if all_done else None
        if rule is TriggerRule.ONE_FAILED:
            if run.failed_parents:
                return "run"
            return SkipReason.NO_UPSTREAM_FAILURE if all_done else None
        raise AssertionError(f"unknown trigger rule {rule}")

    def _decide_pending(self, at: float) -> None:
        for i in self.plan.topo_order:
            run = self.nodes[i]
            if run.state is not _PENDING or run.held:
                continue
            decision = self._decide(i) if self.plan.parents[i] else "run"
            if decision == "run":
                self._ready(i, at)
            elif decision is not None:
                self._skip(i, at, decision)

    def _stop_all(
        self, at: float, state: NodeState, *, reason: str, error: ErrorInfo | None = None
    ) -> None:
        """End every live node: cancel (cancel) or fail (execution timeout) what is in flight."""
        for i in self.plan.topo_order:
            run = self.nodes[i]
            if run.state in ACTIVE_NODE_STATES:
                was_dispatched = run.state is not _WAITING or run.wait_reason != _RETRY
                if was_dispatched and run.state is _WAITING:
                    self._parked -= 1
                run.state = state
                run.finished_at = at
                run.held = False
                run.wait_reason = None
                run.wake_at = None
                self._active -= 1
                self._unfinished -= 1
                if state is _FAILED:
                    self._failed_count += 1
                    run.error = (error or ErrorInfo("cancelled", reason)).to_dict()
                record = self._record_node(NODE_RECORD_OF_STATE[state], i, at)
                record.data = {"reason": reason}
                if was_dispatched:
                    self._step.commands.append(CancelNode(self.plan.ids[i], run.attempt))
            elif run.state is _PENDING:
                run.state = _CANCELLED if state is _CANCELLED else _SKIPPED
                run.finished_at = at
                run.held = False
                self._unfinished -= 1
                record = self._record_node(NODE_RECORD_OF_STATE[run.state], i, at)
                record.data = {"reason": reason}
        self._held.clear()

    def _maybe_finish(self, at: float) -> None:
        if self._unfinished or self.finished or self.phase != PHASE_RUN:
            return
        if self.status is ExecutionStatus.PENDING:
            return
        if self._failed_count or self.error is not None:  # a node failed, or the timeout
            self._summarise_failure()
            if self.plan.spec.on_failure == "compensate":
                self._begin_compensation(at, resume=False)
                return
            self._finish_failed(at)
            return
        self.status = ExecutionStatus.COMPLETED
        self._record_execution(RecordType.EXECUTION_COMPLETED, at)
        self._step.commands.append(ExecutionFinished(self.status))

    def _begin_compensation(self, at: float, *, resume: bool) -> None:
        plan = self.plan
        queue = [
            i
            for i in reversed(plan.topo_order)
            if plan.nodes[i].compensate is not None
            and self.nodes[i].state in (_COMPLETED, _FAILED)
            and self.nodes[i].compensation is None
        ]
        self._compensation_queue = queue
        if not resume:
            self.phase = PHASE_COMPENSATE
            if self.status is ExecutionStatus.WAITING:  # timed out while waiting: nothing waits
                self.status = ExecutionStatus.RUNNING
            if queue:
                self._record_execution(
                    RecordType.EXECUTION_COMPENSATING,
                    at,
                    data={"nodes": [plan.ids[i] for i in queue]},
                )
        if queue:
            self._step.commands.append(RunCompensation(plan.ids[queue[0]]))
        else:
            self._finish_failed(at)

    def _next_compensation(self, at: float) -> None:
        if self._compensation_queue:
            self._step.commands.append(RunCompensation(self.plan.ids[self._compensation_queue[0]]))
        else:
            self._finish_failed(at)

    def _summarise_failure(self) -> None:
        """Name the failed nodes (before compensation turns them into ``compensated``)."""
        if self.error is not None:
            return
        failed = [self.plan.ids[i] for i, r in enumerate(self.nodes) if r.state is _FAILED]
        first = self.nodes[self.plan.index[failed[0]]].error if failed else None
        message = f"node(s) failed: {', '.join(failed[:10])}" if failed else "failed"
        if first:
            message += f" ({failed[0]}: {first.get('message', '')})"
        self.error = {"category": "node_failed", "message": message, "nodes": failed}

    def _finish_failed(self, at: float) -> None:
        self.status = ExecutionStatus.FAILED
        self._summarise_failure()
        self._record_execution(RecordType.EXECUTION_FAILED, at, data={"error": self.error})
        self._step.commands.append(ExecutionFinished(self.status))

    def _update_waiting_status(self, at: float) -> None:
        """The execution is ``waiting`` while every live node waits on a person or a timer."""
        if self.status is not ExecutionStatus.RUNNING or self.phase != PHASE_RUN:
            return
        if self._active and self._parked == self._active:
            self.status = ExecutionStatus.WAITING
            self._record_execution(RecordType.EXECUTION_WAITING, at)

    def _leave_waiting_status(self, at: float) -> None:
        if self.status is ExecutionStatus.WAITING:
            self.status = ExecutionStatus.RUNNING
            self._record_execution(RecordType.EXECUTION_RUNNING, at)

    def _recount(self) -> None:
        """Rebuild counters and totals from node states (after restore or a retry reset)."""
        plan = self.plan
        for run in self.nodes:
            run.ok_parents = run.failed_parents = run.done_parents = 0
        self._active = self._unfinished = self._failed_count = self._parked = 0
        self._held = []
        for i, run in enumerate(self.nodes):
            state = run.state
            if state in ACTIVE_NODE_STATES:
                self._active += 1
                if state is _WAITING and run.wait_reason != _RETRY:
                    self._parked += 1
            if state is _PENDING or state in ACTIVE_NODE_STATES:
                self._unfinished += 1
                if run.held:
                    self._held.append(i)
                continue
            if state is _FAILED or (state is _COMPENSATED and run.error is not None):
                self._failed_count += 1
            ok = state is _COMPLETED or (state is _COMPENSATED and run.error is None)
            bad = state is _FAILED or (state is _COMPENSATED and run.error is not None)
            for child in plan.children[i]:
                child_run = self.nodes[child]
                child_run.done_parents += 1
                if ok:
                    child_run.ok_parents += 1
                elif bad:
                    child_run.failed_parents += 1

    def _record_node(self, kind: RecordType, i: int, at: float) -> Record:
        run = self.nodes[i]
        record = Record(
            type=kind,
            at=at,
            node=self.plan.ids[i],
            attempt=run.attempt,
            state=run.state,
            error=run.error,
            started_at=run.started_at,
            finished_at=run.finished_at,
            wait_reason=run.wait_reason,
            wake_at=run.wake_at,
        )
        if run.compensation is not None:
            record.extra["compensation"] = run.compensation
        self._step.records.append(record)
        return record

    def _record_execution(
        self, kind: RecordType, at: float, data: dict[str, Any] | None = None
    ) -> Record:
        record = Record(type=kind, at=at, status=self.status, data=data, phase=self.phase)
        self._step.records.append(record)
        return record
