"""What the client returns of node logs: one line a node attempt wrote, and a page of them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrion.client.wire import timestamp

__all__ = ["LogLine", "LogPage"]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One log line of a node attempt; ``at`` in epoch seconds, ``seq`` global, increasing."""

    seq: int
    node_id: str
    attempt: int
    at: float
    level: str
    logger: str
    message: str

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> LogLine:
        return cls(
            seq=int(data.get("seq") or 0),
            node_id=str(data.get("node_id") or ""),
            attempt=int(data.get("attempt") or 0),
            at=timestamp(data.get("at")) or 0.0,
            level=str(data.get("level") or ""),
            logger=str(data.get("logger") or ""),
            message=str(data.get("message") or ""),
        )

    def to_dict(self) -> dict[str, Any]:
        """The wire shape (``at`` as ISO 8601 UTC)."""
        return {
            "seq": self.seq,
            "node_id": self.node_id,
            "attempt": self.attempt,
            "at": datetime.fromtimestamp(self.at, UTC).isoformat(),
            "level": self.level,
            "logger": self.logger,
            "message": self.message,
        }


@dataclass(frozen=True, slots=True)
class LogPage:
    """A page of log lines; ask again with ``after=next_after`` for the next."""

    items: list[LogLine]
    next_after: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> LogPage:
        items = [LogLine.from_api(item) for item in data.get("items") or []]
        fallback = items[-1].seq if items else 0
        return cls(items=items, next_after=int(data.get("next_after") or fallback))
