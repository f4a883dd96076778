"""What the engine knows of its failed commits: counts, and executions it stopped retrying.

A turn whose commit fails is forgotten, and the executions it touched are reloaded from the
store (``EngineLoop``). When the store is away for a while that is right: the reload waits
for it. When the store refused a value of the turn (``UnstorableValue``: its encoder or driver
cannot write it), a reload runs the same attempt again and fails the same way; after
``PARK_AFTER`` such failures the execution is parked instead: it stays as last committed, is
not driven here any more, and is reported (``/health`` is degraded and lists it, with the
error; ``orchestrion_executions_parked``) until a restart loads it again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from orchestrion.errors import StoreError, UnstorableValue

__all__ = ["PARK_AFTER", "CommitFaults"]

logger = logging.getLogger(__name__)

PARK_AFTER = 3
"""Refused commits of one execution after which it is parked rather than reloaded."""
_PARKED_KEPT = 1000  # parked executions listed at most (the count goes on)
_RECENT = 60.0  # seconds a failed commit keeps /health degraded


@dataclass(slots=True)
class CommitFaults:
    """Failed commits of one engine (see the module docstring)."""

    total: int = 0  # failed commits of an execution's records since the process started
    last_at: float = 0.0  # when the last one failed (time.time())
    refused: dict[str, int] = field(default_factory=dict)  # execution -> refused commits
    parked: dict[str, str] = field(default_factory=dict)  # execution -> the last error

    def failed(self, execution_id: str, exc: StoreError) -> bool:
        """Count a failed commit of ``execution_id``; whether to park it (not reload it)."""
        self.total += 1
        self.last_at = time.time()
        if not isinstance(exc, UnstorableValue):
            return False
        times = self.refused[execution_id] = self.refused.get(execution_id, 0) + 1
        if times < PARK_AFTER:
            return False
        self.refused.pop(execution_id, None)
        if len(self.parked) < _PARKED_KEPT:
            self.parked[execution_id] = str(exc)[:1000]
        logger.error(
            "execution %s is parked: the store refused its state %d times (%s); it is not"
            " driven any more until the service restarts",
            execution_id, times, exc,
        )  # fmt: skip
        return True

    def turn_failed(self) -> None:
        """A turn failed before its commit (a bug): counted as a failed commit."""
        self.total += 1
        self.last_at = time.time()

    def ended(self, execution_id: str) -> None:
        """``execution_id`` finished or was cancelled: it owes nothing any more."""
        if self.refused:
            self.refused.pop(execution_id, None)
        if self.parked:
            self.parked.pop(execution_id, None)

    def recent(self) -> bool:
        """Whether a commit failed in the last minute."""
        return self.last_at > 0 and time.time() - self.last_at < _RECENT
