"""Node and execution states, and which of them are final."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE_NODE_STATES",
    "FINAL_EXECUTION_STATES",
    "FINAL_NODE_STATES",
    "ExecutionStatus",
    "NodeState",
]


class NodeState(StrEnum):
    """Where one node of one execution stands."""

    PENDING = "pending"  # dependencies not settled yet
    QUEUED = "queued"  # dispatched, no worker has started it
    RUNNING = "running"
    WAITING = "waiting"  # retry backoff, approval, timer
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"  # condition false, or upstream failed/skipped
    CANCELLED = "cancelled"
    COMPENSATED = "compensated"  # completed, then undone by its compensation


class ExecutionStatus(StrEnum):
    """Where one execution stands."""

    PENDING = "pending"  # submitted, not triggered
    RUNNING = "running"
    WAITING = "waiting"  # every live node waits (approval, timer)
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


ACTIVE_NODE_STATES = frozenset({NodeState.QUEUED, NodeState.RUNNING, NodeState.WAITING})
FINAL_NODE_STATES = frozenset(
    {
        NodeState.COMPLETED,
        NodeState.FAILED,
        NodeState.SKIPPED,
        NodeState.CANCELLED,
        NodeState.COMPENSATED,
    }
)
FINAL_EXECUTION_STATES = frozenset(
    {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
)
