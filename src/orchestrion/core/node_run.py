"""The live state of one node in one execution, and what one event produced."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final, Literal

from orchestrion.core.events import Command, Record
from orchestrion.core.reasons import SkipReason
from orchestrion.core.states import NodeState

__all__ = ["PHASE_COMPENSATE", "PHASE_RUN", "Decision", "NodeRun", "Step"]

PHASE_RUN: Final = "run"
PHASE_COMPENSATE: Final = "compensate"  # the saga: compensation handlers run, then it fails

Decision = Literal["run"] | SkipReason | None
"""What a node's parents decide: it runs, it is skipped (why), or not yet (None)."""


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
