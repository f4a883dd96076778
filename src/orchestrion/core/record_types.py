"""The journal's vocabulary: the ``type`` of every record the state machine writes.

Each value is what the store journals and the API, the CLI and clients read back
(``node.queued``); as a ``StrEnum`` a member equals, hashes, formats and serialises exactly
as its string, so a record read back from the store as plain text compares equal to it.
"""

from __future__ import annotations

from enum import StrEnum

from orchestrion.core.states import NodeState

__all__ = ["FINAL_EXECUTION_RECORDS", "NODE_RECORD_OF_STATE", "RecordType"]


class RecordType(StrEnum):
    """What one durable state change was."""

    # execution-level records (``Record.node`` is None)
    EXECUTION_STARTED = "execution.started"
    EXECUTION_RUNNING = "execution.running"  # no longer waiting: a node moved again
    EXECUTION_WAITING = "execution.waiting"
    EXECUTION_PAUSED = "execution.paused"
    EXECUTION_RESUMED = "execution.resumed"
    EXECUTION_RETRIED = "execution.retried"
    EXECUTION_RECOVERED = "execution.recovered"  # re-issued after a restart
    EXECUTION_COMPENSATING = "execution.compensating"
    # a cancel that came while compensating: recorded, the compensation runs to its end
    EXECUTION_CANCEL_REQUESTED = "execution.cancel_requested"
    # a pause that came while compensating: recorded, the compensation runs to its end
    EXECUTION_PAUSE_REQUESTED = "execution.pause_requested"
    EXECUTION_CRITERIA = "execution.criteria_evaluated"  # the success criteria's outcomes
    EXECUTION_NOTICE = "execution.notice"  # routing or error handling told a team something
    EXECUTION_NOTICE_DELIVERED = "execution.notice_delivered"  # every notice sink took it
    # an approve or reject that found its node no longer waiting: refused, kept for the record
    EXECUTION_DECISION_REFUSED = "execution.decision_refused"
    EXECUTION_COMPLETED = "execution.completed"
    EXECUTION_FAILED = "execution.failed"
    EXECUTION_CANCELLED = "execution.cancelled"

    # node-level records
    NODE_QUEUED = "node.queued"
    NODE_STARTED = "node.started"
    NODE_WAITING = "node.waiting"
    NODE_WOKEN = "node.woken"  # its own wait ran out: the handler runs again
    NODE_RETRY_SCHEDULED = "node.retry_scheduled"
    NODE_COMPLETED = "node.completed"
    NODE_FAILED = "node.failed"
    NODE_SKIPPED = "node.skipped"
    NODE_CANCELLED = "node.cancelled"
    NODE_COMPENSATED = "node.compensated"
    NODE_COMPENSATION_FAILED = "node.compensation_failed"
    NODE_RESET = "node.reset"  # a retry runs it again
    NODE_COMPENSATION_RESET = "node.compensation_reset"


FINAL_EXECUTION_RECORDS = frozenset(
    {
        RecordType.EXECUTION_COMPLETED,
        RecordType.EXECUTION_FAILED,
        RecordType.EXECUTION_CANCELLED,
    }
)
"""The records that end an execution."""

NODE_RECORD_OF_STATE: dict[NodeState, RecordType] = {
    NodeState.PENDING: RecordType.NODE_RESET,
    NodeState.QUEUED: RecordType.NODE_QUEUED,
    NodeState.RUNNING: RecordType.NODE_STARTED,
    NodeState.WAITING: RecordType.NODE_WAITING,
    NodeState.COMPLETED: RecordType.NODE_COMPLETED,
    NodeState.FAILED: RecordType.NODE_FAILED,
    NodeState.SKIPPED: RecordType.NODE_SKIPPED,
    NodeState.CANCELLED: RecordType.NODE_CANCELLED,
    NodeState.COMPENSATED: RecordType.NODE_COMPENSATED,
}
"""The record that moves a node into each state."""
