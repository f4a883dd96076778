"""How an execution ends: completion, the compensation saga, failure, and the waiting status.

When every node is final the execution completes or, if a node failed, runs the compensation
handlers of the completed nodes one by one in reverse topological order and then fails. Only a
node whose action completed is undone: a failed node, and one whose attempt was still in flight
when the execution timed out (failed by the timeout, its attempt abandoned), did nothing the
saga could know of, so it keeps its failure and its dead letter. A compensation that fails
leaves its node completed with the compensation's error, and the execution's error names it.
A workflow with success criteria is judged first: the machine asks for them to be evaluated
(``JudgeCriteria``), is told how each ended (``CriteriaJudged``), journals that, and completes,
or fails with ``success_criteria`` (compensating first, as for any failure) when a required
one did not hold. While every live node waits on a person or a timer the execution is
``waiting``.
"""

from __future__ import annotations

from orchestrion.core.criteria import CriterionResult
from orchestrion.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    CriteriaJudged,
    ExecutionFinished,
    JudgeCriteria,
    RunCompensation,
)
from orchestrion.core.node_run import PHASE_COMPENSATE, PHASE_RUN
from orchestrion.core.propagation import Propagation
from orchestrion.core.reasons import SkipReason, WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ACTIVE_NODE_STATES, ExecutionStatus, NodeState
from orchestrion.errors import ErrorCategory

__all__ = ["Settlement"]

# Module globals, not enum members: a member is looked up through its class, which costs
# the hot path (a few records per node) several percent.
_COMPLETED = NodeState.COMPLETED
_FAILED = NodeState.FAILED
_COMPENSATED = NodeState.COMPENSATED
_WAITING = NodeState.WAITING
_LIVE_OR_PENDING = frozenset({NodeState.PENDING, *ACTIVE_NODE_STATES})

_EXECUTION_COMPENSATING = RecordType.EXECUTION_COMPENSATING
_EXECUTION_COMPLETED = RecordType.EXECUTION_COMPLETED
_EXECUTION_CRITERIA = RecordType.EXECUTION_CRITERIA
_EXECUTION_FAILED = RecordType.EXECUTION_FAILED
_EXECUTION_RUNNING = RecordType.EXECUTION_RUNNING
_EXECUTION_WAITING = RecordType.EXECUTION_WAITING
_NODE_COMPENSATED = RecordType.NODE_COMPENSATED
_NODE_COMPENSATION_FAILED = RecordType.NODE_COMPENSATION_FAILED


class Settlement(Propagation):
    """Finishing an execution, its compensation saga, and its waiting status."""

    __slots__ = ()

    def _maybe_finish(self, at: float) -> None:
        if self.plan.watchers and self._unfinished:
            self._end_watchers(at)
        if self._unfinished or self.finished or self.phase != PHASE_RUN:
            return
        if self.status is ExecutionStatus.PENDING:
            return
        if self._failed_count or self.error is not None:  # a node failed, or the timeout
            self._fail(at)
            return
        if self.plan.spec.success_criteria:
            if not self._judging:
                self._judging = True
                self._judge_round += 1
                routing = self.plan.routing
                incomplete = tuple(
                    (self.plan.ids[i], run.state.value)
                    for i, run in enumerate(self.nodes)
                    if run.state is not _COMPLETED and not (routing and routing[i])
                )
                self._step.commands.append(JudgeCriteria(at, incomplete, self._judge_round))
            return
        self._complete_execution(at)

    def _end_watchers(self, at: float) -> None:
        """Skip the routing rules on the run once nothing else is left to run: a condition on
        ``workflow.duration`` that has not held by then never will for this run."""
        if self.finished or self.phase != PHASE_RUN or self.status is ExecutionStatus.PENDING:
            return
        live = [w for w in self.plan.watchers if self.nodes[w].state in _LIVE_OR_PENDING]
        if not live or len(live) != self._unfinished:
            return
        for w in live:
            run = self.nodes[w]
            if run.state in ACTIVE_NODE_STATES:
                if run.state is _WAITING and run.wait_reason != WaitReason.RETRY:
                    self._parked -= 1
                    self._leave_waiting_status(at)
                self._active -= 1
            self._skip(w, at, SkipReason.RUN_ENDED)

    def _fail(self, at: float) -> None:
        self._judging = False  # a verdict still out is stale now
        self._summarise_failure()
        if self.plan.spec.on_failure == "compensate":
            self._begin_compensation(at, resume=False)
            return
        self._finish_failed(at)

    def _complete_execution(self, at: float) -> None:
        self.status = ExecutionStatus.COMPLETED
        self._record_execution(_EXECUTION_COMPLETED, at)
        self._step.commands.append(ExecutionFinished(self.status))

    def _on_criteria_judged(self, event: CriteriaJudged) -> None:
        """Journal the criteria's outcomes; complete, or fail when a required one failed."""
        if not self._judging or event.round != self._judge_round or self.finished:
            return  # stale: the execution failed, was cancelled or retried meanwhile
        self._judging = False
        outcomes = [outcome.to_dict() for outcome in event.outcomes]
        failed = [o for o in event.outcomes if o.required and not o.passed]
        self._record_execution(
            _EXECUTION_CRITERIA, event.at, data={"criteria": outcomes, "passed": not failed}
        )
        if not failed:
            self._complete_execution(event.at)
            return
        self.error = {
            "category": ErrorCategory.SUCCESS_CRITERIA,
            "message": "; ".join(_failure_text(o) for o in failed[:5]),
            "criteria": [o.condition for o in failed],
        }
        self._fail(event.at)

    def _summarise_failure(self) -> None:
        """Name the failed nodes."""
        if self.error is not None:
            return
        failed = [self.plan.ids[i] for i, r in enumerate(self.nodes) if r.state is _FAILED]
        first = self.nodes[self.plan.index[failed[0]]].error if failed else None
        message = f"node(s) failed: {', '.join(failed[:10])}" if failed else "failed"
        if first:
            message += f" ({failed[0]}: {first.get('message', '')})"
        self.error = {"category": ErrorCategory.NODE_FAILED, "message": message, "nodes": failed}

    def _finish_failed(self, at: float) -> None:
        self.status = ExecutionStatus.FAILED
        self._summarise_failure()
        self._record_execution(_EXECUTION_FAILED, at, data={"error": self.error})
        self._step.commands.append(ExecutionFinished(self.status))

    def _begin_compensation(self, at: float, *, resume: bool) -> None:
        plan = self.plan
        queue = [
            i
            for i in reversed(plan.topo_order)
            if plan.nodes[i].compensate is not None
            and self.nodes[i].state is _COMPLETED
            and self.nodes[i].compensation is None
        ]
        self._compensation_queue = queue
        if not resume:
            self.phase = PHASE_COMPENSATE
            # Timed out while waiting: nothing waits now. Paused (a node that was running
            # failed, or the timeout): a compensation is not paused, the pause is lifted.
            paused = self.status is ExecutionStatus.PAUSED
            if self.status is ExecutionStatus.WAITING or paused:
                self.status = ExecutionStatus.RUNNING
            if queue:
                self.compensation_round += 1
                data: dict[str, object] = {"nodes": [plan.ids[i] for i in queue]}
                if paused:
                    data["pause_lifted"] = True
                self._record_execution(_EXECUTION_COMPENSATING, at, data=data)
        self._next_compensation(at)

    def compensation_under_way(self) -> str | None:
        """The node whose compensation the execution waits for (of ``compensation_round``),
        or None when it is not compensating."""
        queue = self._compensation_queue
        if self.phase != PHASE_COMPENSATE or not queue or self.finished:
            return None
        return self.plan.ids[queue[0]]

    def _compensation_answered(self, node: str) -> int | None:
        """The index of ``node`` if its compensation is the one awaited (it leaves the queue);
        None for a stale answer (another node's turn, or no compensation under way)."""
        i = self.plan.index[node]
        queue = self._compensation_queue
        if self.phase != PHASE_COMPENSATE or not queue or queue[0] != i:
            return None
        queue.pop(0)
        return i

    def _next_compensation(self, at: float) -> None:
        if self._compensation_queue:
            node = self.plan.ids[self._compensation_queue[0]]
            self._step.commands.append(RunCompensation(node, self.compensation_round))
        else:
            self._name_failed_compensations()
            self._finish_failed(at)

    def _name_failed_compensations(self) -> None:
        """Add the nodes whose compensation failed to the execution's error: what they did
        is still done, and someone has to undo it by hand."""
        ids = self.plan.ids
        broken = [ids[i] for i, r in enumerate(self.nodes) if r.compensation == "failed"]
        if not broken or self.error is None:
            return
        first = self.nodes[self.plan.index[broken[0]]].error or {}
        message = f"; compensation failed: {', '.join(broken[:10])}"
        message += f" ({broken[0]}: {first.get('message', '')})"
        self.error = {
            **self.error,
            "message": (str(self.error.get("message", "")) + message)[:2000],
            "compensation_failed": broken,
        }

    def _on_compensated(self, event: CompensationSucceeded) -> None:
        i = self._compensation_answered(event.node)
        if i is None:
            return
        run = self.nodes[i]
        run.compensation = "done"
        run.state = _COMPENSATED
        self._record_node(_NODE_COMPENSATED, i, event.at)
        self._next_compensation(event.at)

    def _on_compensation_failed(self, event: CompensationFailed) -> None:
        i = self._compensation_answered(event.node)
        if i is None:
            return
        run = self.nodes[i]
        run.compensation = "failed"
        # The node stays completed (its action was not undone) and carries the compensation's
        # error, so status, the API and the dashboard show it where they show errors.
        run.error = event.error.to_dict()
        record = self._record_node(_NODE_COMPENSATION_FAILED, i, event.at)
        record.data = {"error": event.error.to_dict()}
        self._next_compensation(event.at)

    def _update_waiting_status(self, at: float) -> None:
        """The execution is ``waiting`` while every live node waits on a person or a timer."""
        if self.status is not ExecutionStatus.RUNNING or self.phase != PHASE_RUN:
            return
        if self._active and self._parked == self._active:
            self.status = ExecutionStatus.WAITING
            self._record_execution(_EXECUTION_WAITING, at)

    def _leave_waiting_status(self, at: float) -> None:
        if self.status is ExecutionStatus.WAITING:
            self.status = ExecutionStatus.RUNNING
            self._record_execution(_EXECUTION_RUNNING, at)


def _failure_text(outcome: CriterionResult) -> str:
    text = f"success criterion '{outcome.condition}' failed"
    if outcome.detail:
        return f"{text}: {outcome.detail}"
    return f"{text} (evaluated to {outcome.value!r})"
