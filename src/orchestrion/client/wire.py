"""How the API's JSON values are read: UPPERCASE states as ``ExecutionStatus``/``NodeState``,
ISO 8601 times as epoch seconds (as in the embedded engine), optional fields as None."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrion.core.states import ExecutionStatus, NodeState

__all__ = [
    "error_body",
    "execution_status",
    "node_state",
    "optional_int",
    "optional_str",
    "timestamp",
]


def execution_status(value: Any) -> ExecutionStatus:
    """``"RUNNING"`` (or ``"running"``) as ``ExecutionStatus.RUNNING``."""
    return ExecutionStatus(str(value).lower())


def node_state(value: Any) -> NodeState:
    """``"COMPLETED"`` (or ``"completed"``) as ``NodeState.COMPLETED``."""
    return NodeState(str(value).lower())


def timestamp(value: Any) -> float | None:
    """An ISO 8601 string (naive means UTC) or epoch number as epoch seconds; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def error_body(value: Any) -> dict[str, Any] | None:
    """An error as the engine keeps it: a dict, or the text of anything else as its message."""
    if value is None or isinstance(value, dict):
        return value
    return {"message": str(value)}


def optional_int(value: Any) -> int | None:
    """``value`` as an int; None stays None."""
    return None if value is None else int(value)


def optional_str(value: Any) -> str | None:
    """``value`` as text; None stays None."""
    return None if value is None else str(value)
