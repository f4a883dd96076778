"""Requests from outside an execution: cancel, pause, resume, retry, and its timeout.

Cancel and the execution timeout end every live node at once; pause holds newly ready nodes
back; a retry resets what failed, was cancelled or was skipped because of a failure (never what
a decision ruled out, unless the deciding node runs again) and runs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrion.core.events import (
    CancelNode,
    CancelRequested,
    ErrorInfo,
    ExecutionFinished,
    ExecutionTimedOut,
    PauseRequested,
    ResumeRequested,
    RetryRequested,
)
from orchestrion.core.node_run import PHASE_COMPENSATE, PHASE_RUN
from orchestrion.core.reasons import DECISION_SKIPS, SkipReason, WaitReason
from orchestrion.core.record_types import NODE_RECORD_OF_STATE, RecordType
from orchestrion.core.settlement import Settlement
from orchestrion.core.states import ACTIVE_NODE_STATES, ExecutionStatus, NodeState
from orchestrion.errors import ErrorCategory

__all__ = [
    "ABANDONED",
    "COMPENSATING_CANCEL",
    "COMPENSATING_PAUSE",
    "ExecutionControl",
    "cancel_request",
    "pause_request",
]

COMPENSATING_CANCEL = (
    "Cancel recorded, not carried out: the execution had failed and is compensating (undoing"
    " the nodes that completed); the compensation runs to its end and the execution ends"
    " FAILED, its error naming the cancel (cancel_requested). A cancel with force=true"
    " abandons the compensation, leaving the nodes not yet undone as they are"
)
"""What the answer to a cancel says when it came while the execution compensated."""
COMPENSATING_PAUSE = (
    "Pause recorded, not carried out: the execution had failed and is compensating (undoing"
    " the nodes that completed); a compensation is not paused: it runs to its end and the"
    " execution ends FAILED, its error naming the pause (pause_requested). A cancel with"
    " force=true abandons the compensation, leaving the nodes not yet undone as they are"
)
"""What the answer to a pause says when it came while the execution compensated."""
ABANDONED = "compensation abandoned: the nodes not yet undone are left as they are"
"""What a forced cancel adds to its reason when it stopped a compensation under way."""

# Module globals, not enum members: a member is looked up through its class, which costs
# the hot path (a few records per node) several percent.
_PENDING = NodeState.PENDING
_WAITING = NodeState.WAITING
_COMPLETED = NodeState.COMPLETED
_FAILED = NodeState.FAILED
_SKIPPED = NodeState.SKIPPED
_CANCELLED = NodeState.CANCELLED
_RETRY = WaitReason.RETRY
_BRANCH_NOT_TAKEN = SkipReason.BRANCH_NOT_TAKEN

_EXECUTION_CANCELLED = RecordType.EXECUTION_CANCELLED
_EXECUTION_CANCEL_REQUESTED = RecordType.EXECUTION_CANCEL_REQUESTED
_EXECUTION_PAUSED = RecordType.EXECUTION_PAUSED
_EXECUTION_PAUSE_REQUESTED = RecordType.EXECUTION_PAUSE_REQUESTED
_EXECUTION_RESUMED = RecordType.EXECUTION_RESUMED
_EXECUTION_RETRIED = RecordType.EXECUTION_RETRIED
_NODE_COMPENSATION_RESET = RecordType.NODE_COMPENSATION_RESET
_NODE_RESET = RecordType.NODE_RESET


def cancel_request(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The cancel an execution was asked for while it compensated (``at``, ``reason``), as
    its error keeps it; None when there was none."""
    found = (error or {}).get("cancel_requested")
    return found if isinstance(found, dict) else None


def pause_request(error: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pause an execution was asked for while it compensated (``at``), as its error
    keeps it; None when there was none."""
    found = (error or {}).get("pause_requested")
    return found if isinstance(found, dict) else None


class ExecutionControl(Settlement):
    """Cancel, pause, resume, retry and timeout of one execution."""

    __slots__ = ()

    def _on_cancel(self, event: CancelRequested) -> None:
        if self.finished:
            return
        reason = event.reason
        abandoned: list[str] | None = None
        if self.phase == PHASE_COMPENSATE:
            if not event.force:
                self._cancel_while_compensating(event)
                return
            reason = f"{reason}; {ABANDONED}"  # forced: the saga stops half way, and says so
            # The nodes not undone, the one under way first: it is stopped, and a
            # compensation asked for in the same turn is never sent (``CancelNode`` after
            # ``RunCompensation`` in one step: the engine drops the latter).
            abandoned = [self.plan.ids[i] for i in self._compensation_queue]
            if self._compensation_queue:
                i = self._compensation_queue[0]
                stop = CancelNode(self.plan.ids[i], self.nodes[i].attempt, compensation=True)
                self._step.commands.append(stop)
        self._stop_all(event.at, _CANCELLED, reason=reason)
        self._compensation_queue = []  # a compensation still out is abandoned; its result is stale
        self._judging = False  # so is a verdict on the success criteria
        self.status = ExecutionStatus.CANCELLED
        self.error = {"category": ErrorCategory.CANCELLED, "message": reason}
        data: dict[str, Any] = {"reason": reason}
        if abandoned is not None:
            self.error["abandoned"] = data["abandoned"] = abandoned
        self._record_execution(_EXECUTION_CANCELLED, event.at, data=data)
        self._step.commands.append(ExecutionFinished(self.status))

    def _cancel_while_compensating(self, event: CancelRequested) -> None:
        """A cancel that comes while the execution compensates does not stop the saga: the
        execution has already failed, and a saga half done leaves effects no one knows
        about. The cancel is recorded (journal, and the execution's error under
        ``cancel_requested``), the compensation runs to its end, and the execution ends
        ``failed`` as it would have."""
        error = dict(self.error or {})
        if "cancel_requested" not in error:  # the first one is kept; each is journalled
            error["cancel_requested"] = {"at": event.at, "reason": event.reason}
            note = f"; cancel requested while compensating ({event.reason}): not interrupted"
            error["message"] = (str(error.get("message", "")) + note)[:2000]
            self.error = error
        self._record_execution(
            _EXECUTION_CANCEL_REQUESTED,
            event.at,
            data={"reason": event.reason, "error": self.error},
        )

    def _on_timeout(self, event: ExecutionTimedOut) -> None:
        if self.finished or self.phase == PHASE_COMPENSATE:
            return
        if self.status is ExecutionStatus.PENDING:
            return
        error = ErrorInfo(ErrorCategory.TIMEOUT, "execution exceeded its timeout", transient=False)
        self.error = error.to_dict()
        self._stop_all(event.at, _FAILED, reason=error.message, error=error)
        self._maybe_finish(event.at)

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
                    run.error = (error or ErrorInfo(ErrorCategory.CANCELLED, reason)).to_dict()
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

    def _on_pause(self, event: PauseRequested) -> None:
        if self.finished or self.status is ExecutionStatus.PAUSED:
            return
        if self.status is ExecutionStatus.PENDING:
            return
        if self.phase == PHASE_COMPENSATE:
            self._pause_while_compensating(event)
            return
        self.status = ExecutionStatus.PAUSED
        self._record_execution(_EXECUTION_PAUSED, event.at)

    def _pause_while_compensating(self, event: PauseRequested) -> None:
        """A compensation is not paused, as a cancel does not stop it (above): the pause is
        recorded (journal, and the execution's error under ``pause_requested``), the status
        stays ``running``, and the execution ends ``failed`` once the compensation ran."""
        error = dict(self.error or {})
        if "pause_requested" not in error:  # the first one is kept; each is journalled
            error["pause_requested"] = {"at": event.at}
            note = "; pause requested while compensating: not paused"
            error["message"] = (str(error.get("message", "")) + note)[:2000]
            self.error = error
        self._record_execution(_EXECUTION_PAUSE_REQUESTED, event.at, data={"error": self.error})

    def _on_resume(self, event: ResumeRequested) -> None:
        if self.status is not ExecutionStatus.PAUSED:
            return
        self.status = ExecutionStatus.RUNNING
        self._record_execution(_EXECUTION_RESUMED, event.at)
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
        self._judging = False
        self._record_execution(
            _EXECUTION_RETRIED,
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
                self._record_node(_NODE_RESET, i, event.at)
            elif run.compensation is not None:
                # A failed compensation is tried again if the retried execution fails again.
                if run.compensation == "failed" and run.state is _COMPLETED:
                    run.error = None
                run.compensation = None
                self._record_node(_NODE_COMPENSATION_RESET, i, event.at)
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
