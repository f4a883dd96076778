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
  handlers of the completed nodes one by one in reverse topological order (saga) and then
  fails. A failed node, or one still running when the execution timed out, is not undone.
- Cancel marks every live node cancelled at once; pause holds newly ready nodes back.
- A retry runs again what failed, was cancelled or was skipped because of a failure, never
  what a decision ruled out: a child a condition did not choose (``branch_not_taken``) and a
  node whose ``when:`` was false (``condition_false``) stay skipped unless the deciding node
  itself runs again (a rerun from it or from above it).

The rules are split by concern along a chain of base classes: ``core/propagation.py`` (node
runs, counters, readiness and skips), ``core/settlement.py`` (finishing, compensation, the
waiting status) and ``core/control.py`` (cancel, pause, resume, retry, timeout). This module
adds the public interface and the node events.
"""

from __future__ import annotations

from typing import Any

from orchestrion.core.backoff import retry_delay, should_retry
from orchestrion.core.control import ExecutionControl
from orchestrion.core.events import (
    CancelRequested,
    CompensationFailed,
    CompensationSucceeded,
    CriteriaJudged,
    Dispatch,
    ErrorInfo,
    Event,
    ExecutionTimedOut,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
    NoticeDelivered,
    Notify,
    PauseRequested,
    Record,
    ResumeRequested,
    RetryRequested,
    ScheduleTimer,
    Started,
    TimerFired,
    TimerKind,
    WaitResolved,
)
from orchestrion.core.node_run import PHASE_COMPENSATE, PHASE_RUN, NodeRun, Step
from orchestrion.core.reasons import WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.rendered import INPUTS_KEY
from orchestrion.core.states import ACTIVE_NODE_STATES, ExecutionStatus, NodeState
from orchestrion.errors import ErrorCategory

__all__ = ["ExecutionMachine", "NodeRun", "Step"]

# Module globals, not enum members: a member is looked up through its class, which costs
# the hot path (a few records per node) several percent.
_QUEUED = NodeState.QUEUED
_RUNNING = NodeState.RUNNING
_WAITING = NodeState.WAITING
_COMPLETED = NodeState.COMPLETED
_FAILED = NodeState.FAILED
_RETRY = WaitReason.RETRY

_EXECUTION_NOTICE = RecordType.EXECUTION_NOTICE
_EXECUTION_RECOVERED = RecordType.EXECUTION_RECOVERED
_EXECUTION_STARTED = RecordType.EXECUTION_STARTED
_NODE_COMPLETED = RecordType.NODE_COMPLETED
_NODE_FAILED = RecordType.NODE_FAILED
_NODE_RETRY_SCHEDULED = RecordType.NODE_RETRY_SCHEDULED
_NODE_STARTED = RecordType.NODE_STARTED
_NODE_WAITING = RecordType.NODE_WAITING
_NODE_WOKEN = RecordType.NODE_WOKEN
_RETRY_TIMER = TimerKind.RETRY
_WAKE = TimerKind.WAKE


class ExecutionMachine(ExecutionControl):
    """State of one execution and the rules that move it. See the module docstring."""

    __slots__ = ()

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
            case CriteriaJudged():
                self._on_criteria_judged(event)
            case NoticeDelivered():
                if not self.finished:  # a finished execution's notices are never sent again
                    self._record_execution(
                        RecordType.EXECUTION_NOTICE_DELIVERED, event.at, data={"key": event.key}
                    )
        self._update_waiting_status(event.at)
        return step

    def restore(
        self,
        status: ExecutionStatus,
        phase: str,
        nodes: dict[str, NodeRun],
        error: dict[str, Any] | None = None,
        compensation_round: int = 0,
    ) -> None:
        """Load persisted state (after a restart). Counters are recomputed from node states;
        ``compensation_round``: how many ``execution.compensating`` the journal holds."""
        self.status = status
        self.phase = phase or PHASE_RUN
        self.error = error
        self.compensation_round = compensation_round
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
        step.records.append(Record(type=_EXECUTION_RECOVERED, at=at, status=self.status))
        plan = self.plan
        for i in plan.topo_order:
            run = self.nodes[i]
            if run.state is _QUEUED or run.state is _RUNNING:
                # In flight before the stop: pause only holds back newly ready nodes, so the
                # attempt runs again now, with the same attempt number (same idempotency key).
                woken = run.wait_reason is not None and run.wait_reason != _RETRY
                step.commands.append(Dispatch(plan.ids[i], run.attempt, woken=woken))
            elif run.state is _WAITING and run.wake_at is not None:
                kind = _RETRY_TIMER if run.wait_reason == _RETRY else _WAKE
                step.commands.append(ScheduleTimer(plan.ids[i], run.attempt, run.wake_at, kind))
        if self.phase == PHASE_COMPENSATE:
            self._begin_compensation(at, resume=True)
        else:
            self._decide_pending(at)
            self._release_held(at)
            self._maybe_finish(at)
        self._update_waiting_status(at)
        return step

    def _on_start(self, event: Started) -> None:
        if self.status is not ExecutionStatus.PENDING:
            return
        self.status = ExecutionStatus.RUNNING
        self._record_execution(_EXECUTION_STARTED, event.at)
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
        record = self._record_node(_NODE_STARTED, i, event.at)
        if event.inputs is not None:
            record.data = {INPUTS_KEY: event.inputs}

    def _on_succeeded(self, event: NodeSucceeded) -> None:
        i = self.plan.index[event.node]
        run = self.nodes[i]
        if not self._is_current(run, event.attempt):
            return
        if self.plan.routing and self.plan.routing[i]:
            self._route_notice(i, event.at, event.output)
        self._complete(i, event.at, event.output)

    def _route_notice(self, i: int, at: float, said: Any) -> None:
        """A routing node fired (its output or wait data carries a ``notice``): journal the
        notice with this step and have it delivered once the step is committed."""
        notice = said.get("notice") if isinstance(said, dict) else None
        if not isinstance(notice, dict):
            return
        data = {
            **notice,
            "workflow": self.plan.spec.name,
            "node": self.plan.ids[i],
            "attempt": self.nodes[i].attempt,
        }
        self._record_execution(_EXECUTION_NOTICE, at, data=data)
        self._step.commands.append(Notify(at, data))

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
        record = self._record_node(_NODE_COMPLETED, i, at)
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
        # An error handling rule decides this failure instead of the node's retry policy.
        rule = self.plan.error_action(i, error.category) if self.plan.on_error else None
        halt = rule is not None and rule.kind == "halt"
        if rule is not None and rule.policy is not None:
            policy = rule.policy
        run.error = error.to_dict()
        if run.started_at is None:
            run.started_at = at
        if (
            self.phase == PHASE_RUN
            and not halt
            and should_retry(policy, run.attempt, error.category, error.transient)
        ):
            delay = retry_delay(policy, run.attempt, self._rng.random())
            if error.retry_after is not None:  # asked to wait: at least that, up to max_delay
                delay = max(delay, min(error.retry_after, policy.max_delay))
            run.state = _WAITING
            run.wait_reason = _RETRY
            run.wake_at = at + delay
            record = self._record_node(_NODE_RETRY_SCHEDULED, i, at)
            record.data = {"delay": round(delay, 6), "error": run.error}
            if rule is not None:
                record.data["error_handling"] = {"rule": rule.rule, "action": rule.kind}
            self._step.commands.append(ScheduleTimer(self.plan.ids[i], run.attempt, run.wake_at))
            return
        run.state = _FAILED
        run.finished_at = at
        run.wait_reason = None
        run.wake_at = None
        self._active -= 1
        self._unfinished -= 1
        self._failed_count += 1
        record = self._record_node(_NODE_FAILED, i, at)
        record.data = {"error": run.error}
        if rule is not None:
            record.data["error_handling"] = {"rule": rule.rule, "action": rule.kind}
        self._settle_children(i, at)
        if halt and rule is not None and self.phase == PHASE_RUN and not self.finished:
            self._halt(i, at, rule.rule, rule.error_type, rule.notify, error)
        self._release_held(at)
        self._maybe_finish(at)

    def _halt(
        self,
        i: int,
        at: float,
        rule: int,
        error_type: str,
        notify: tuple[str, ...],
        error: ErrorInfo,
    ) -> None:
        """An error handling rule halts the run: stop every other node, fail, notify."""
        node = self.plan.ids[i]
        message = f"error handling rule {rule} ({error_type}) halted the run: node '{node}' failed"
        self.error = {
            "category": ErrorCategory.HALTED,
            "message": f"{message}: {error.message}"[:2000],
            "node": node,
            "rule": rule,
            "failed_nodes": [node],
        }
        self._stop_all(at, NodeState.CANCELLED, reason=message)
        if notify:
            data: dict[str, Any] = {
                "kind": "halt",
                "workflow": self.plan.spec.name,
                "rule": rule,
                "teams": list(notify),
                "message": message,
                "node": node,
                "attempt": self.nodes[i].attempt,
                "data": {"error": error.to_dict()},
            }
            self._record_execution(_EXECUTION_NOTICE, at, data=data)
            self._step.commands.append(Notify(at, data))

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
        if self.plan.routing and self.plan.routing[i]:
            self._route_notice(i, event.at, event.data)
        record = self._record_node(_NODE_WAITING, i, event.at)
        record.data = {"reason": event.reason, **(event.data or {})}
        if event.wake_at is not None:
            self._step.commands.append(
                ScheduleTimer(self.plan.ids[i], run.attempt, event.wake_at, _WAKE)
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
        if event.kind == _RETRY_TIMER and run.wait_reason == _RETRY:
            if self.status is ExecutionStatus.PAUSED:
                run.held = True
                self._held.append(i)
                return
            self._active -= 1
            self._dispatch(i, event.at)
        elif event.kind == _WAKE and run.wait_reason != _RETRY:
            # The node's own wait ran out (approval timeout, delay): its handler decides what
            # that means, so it runs again with the same attempt.
            # wait_reason stays set while queued: a restart then still knows it was woken.
            self._unpark(run, event.at)
            run.state = _QUEUED
            record = self._record_node(_NODE_WOKEN, i, event.at)
            record.data = {"reason": run.wait_reason}
            self._step.commands.append(Dispatch(self.plan.ids[i], run.attempt, woken=True))
