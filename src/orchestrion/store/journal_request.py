"""A control request journalled with a commit (``CommitBatch.requests``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["JournalRequest"]


@dataclass(frozen=True, slots=True)
class JournalRequest:
    """A control request on ``execution_id`` (``Store.request_control``) committed with what a
    batch makes durable about ``source``: written, or refused, together with it."""

    source: str
    execution_id: str
    event_id: str
    request: dict[str, Any]
    at: float
