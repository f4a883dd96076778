"""The state of one execution and how node outcomes travel along its graph.

``Propagation`` is the base of ``ExecutionMachine`` (``core/machine.py``): it holds the node
runs and the counters, and moves nodes between pending, ready, dispatched and skipped. Each
node counts how its parents ended, so fan-in is decided by arithmetic, once, when the counter
says so (``_decide``), never by scanning the graph. It writes the records of what it changes
(``_record_node``, ``_record_execution``) into the step under way.
"""

from __future__ import annotations

import random
from typing import Any

from orchestrion.core.events import Dispatch, Record
from orchestrion.core.node_run import PHASE_RUN, Decision, NodeRun, Step
from orchestrion.core.plan import Plan
from orchestrion.core.reasons import SkipReason, WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import (
    ACTIVE_NODE_STATES,
    FINAL_EXECUTION_STATES,
    ExecutionStatus,
    NodeState,
)
from orchestrion.definition.model import TriggerRule

__all__ = ["Propagation"]

# Module globals, not enum members: a member is looked up through its class, which costs
# the hot path (a few records per node) several percent.
_PENDING = NodeState.PENDING
_QUEUED = NodeState.QUEUED
_WAITING = NodeState.WAITING
_COMPLETED = NodeState.COMPLETED
_FAILED = NodeState.FAILED
_SKIPPED = NodeState.SKIPPED
_COMPENSATED = NodeState.COMPENSATED
_RETRY = WaitReason.RETRY
_BRANCH_NOT_TAKEN = SkipReason.BRANCH_NOT_TAKEN

_NODE_QUEUED = RecordType.NODE_QUEUED
_NODE_SKIPPED = RecordType.NODE_SKIPPED
_NO_UPSTREAM_FAILURE = SkipReason.NO_UPSTREAM_FAILURE
_NO_UPSTREAM_SUCCESS = SkipReason.NO_UPSTREAM_SUCCESS
_UPSTREAM_FAILED = SkipReason.UPSTREAM_FAILED
_UPSTREAM_SKIPPED = SkipReason.UPSTREAM_SKIPPED


class Propagation:
    """The execution's node runs and counters, and readiness, dispatch and skips."""

    __slots__ = (
        "_active",
        "_compensation_queue",
        "_failed_count",
        "_held",
        "_judge_round",
        "_judging",
        "_parked",
        "_rng",
        "_step",
        "_unfinished",
        "compensation_round",
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
        # Compensations begun so far (each journals ``execution.compensating``): names the
        # current one, so its tasks are told apart from those of an earlier one.
        self.compensation_round = 0
        self._judging = False  # the success criteria are being evaluated (JudgeCriteria out)
        self._judge_round = 0  # JudgeCriteria asked so far (only the last one's answer counts)
        self._step = Step()

    @property
    def finished(self) -> bool:
        return self.status in FINAL_EXECUTION_STATES

    def node_state(self, node_id: str) -> NodeState:
        return self.nodes[self.plan.index[node_id]].state

    def _ready(self, i: int, at: float) -> None:
        """Node ``i`` may run: dispatch it, or hold it back while paused or under a limit.

        Under a concurrency limit every ready node is held, and ``_release_held`` (called by
        whoever made it ready) dispatches by priority, so nodes that become ready together
        start highest priority first.
        """
        run = self.nodes[i]
        limited = self.plan.spec.concurrency is not None and i not in self.plan.watchers
        if self.status is ExecutionStatus.PAUSED or limited:
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
        self._record_node(_NODE_QUEUED, i, at)
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
            elif limit is None or self._active - self._watching() < limit:
                self._dispatch(i, at)
            else:
                kept.append(i)
        self._held = kept

    def _watching(self) -> int:
        """Rules on the run in flight: they wait on a timer and take no concurrency slot."""
        if not self.plan.watchers:
            return 0
        return sum(1 for w in self.plan.watchers if self.nodes[w].state in ACTIVE_NODE_STATES)

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
            record = self._record_node(_NODE_SKIPPED, n, at)
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
        record = self._record_node(_NODE_SKIPPED, i, at)
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

    def _decide(self, i: int) -> Decision:
        """``"run"``, a skip reason, or None (not decided yet), from the parent counters."""
        run = self.nodes[i]
        total = len(self.plan.parents[i])
        rule = self.plan.trigger_rule[i]
        all_done = run.done_parents == total
        if rule is TriggerRule.ALL_SUCCESS:
            if run.failed_parents:
                return _UPSTREAM_FAILED
            if run.done_parents != run.ok_parents:
                return _UPSTREAM_SKIPPED
            return "run" if all_done else None
        if rule is TriggerRule.ALL_DONE:
            return "run" if all_done else None
        if rule is TriggerRule.NONE_FAILED:
            if run.failed_parents:
                return _UPSTREAM_FAILED
            return "run" if all_done else None
        if rule is TriggerRule.ONE_SUCCESS:
            if run.ok_parents:
                return "run"
            return _NO_UPSTREAM_SUCCESS if all_done else None
        if rule is TriggerRule.ONE_FAILED:
            if run.failed_parents:
                return "run"
            return _NO_UPSTREAM_FAILURE if all_done else None
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
