"""What a trigger sets on a pending execution, handed to ``Store.trigger_pending``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["PendingTrigger"]


@dataclass(frozen=True, slots=True)
class PendingTrigger:
    """A trigger's inputs, node overrides and correlation id for ``execution_id``, and
    whether it lowers the execution's trust (a caller less trusted than the execution)."""

    execution_id: str
    inputs: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    correlation_id: str
    distrust: bool = False
