"""What the client returns about dead letters: nodes that failed for good and parked task
messages, pages of them, and what a retry or a drop did."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from orchestrion.client.wire import optional_int, optional_str, timestamp

__all__ = ["DeadLetter", "DeadLetterAction", "DeadLetterPage"]


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter, and why: a node that failed for good (``kind`` "node"), or a task
    message parked in the dead letter queue of scale-out mode (``kind`` "task").

    ``payload`` (the message as sent) is filled by ``get_dead_letter`` only; ``task`` is its
    task part, parsed.
    """

    id: str
    category: str
    message: str
    deliveries: int
    parked_at: float | None
    stream: str
    traceback: str | None = None
    first_sent_at: float | None = None
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    handler: str | None = None
    consumer: str | None = None
    payload: str | None = None
    kind: str = "task"  # "node": a node that failed for good; "task": a parked task message
    workflow: str | None = None

    @property
    def task(self) -> dict[str, Any] | None:
        """The parked task message's ``task`` object; None without a readable payload."""
        if not self.payload:
            return None
        try:
            data = json.loads(self.payload)
        except ValueError:
            return None
        task = data.get("task") if isinstance(data, dict) else None
        return task if isinstance(task, dict) else None

    def to_dict(self) -> dict[str, Any]:
        """Every field (epoch times); ``payload`` only when it was fetched."""
        data = asdict(self)
        if self.payload is None:
            del data["payload"]
        return data

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetter:
        return cls(
            id=str(data["id"]),
            category=str(data.get("category") or "unknown"),
            message=str(data.get("message") or ""),
            deliveries=int(data.get("deliveries") or 0),
            parked_at=timestamp(data.get("parked_at")),
            stream=str(data.get("stream") or ""),
            traceback=data.get("traceback"),
            first_sent_at=timestamp(data.get("first_sent_at")),
            execution_id=optional_str(data.get("execution_id")),
            node_id=optional_str(data.get("node_id")),
            attempt=optional_int(data.get("attempt")),
            handler=optional_str(data.get("handler")),
            consumer=optional_str(data.get("consumer")),
            payload=optional_str(data.get("payload")),
            kind=str(data.get("kind") or "task"),
            workflow=optional_str(data.get("workflow")),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """Dead letters, oldest first; ask again with ``after=next_after`` for the next page."""

    items: list[DeadLetter]
    next_after: str | None = None
    total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [item.to_dict() for item in self.items],
            "next_after": self.next_after,
            "total": self.total,
        }

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetterPage:
        items = [DeadLetter.from_api(item) for item in data.get("items") or []]
        return cls(
            items=items, next_after=data.get("next_after"), total=int(data.get("total") or 0)
        )


@dataclass(frozen=True, slots=True)
class DeadLetterAction:
    """What ``retry_dead_letter`` or ``drop_dead_letter`` did; ``stream_entry_id`` is the
    id of the task entry a retry added."""

    id: str
    action: str  # "retried" | "dropped"
    stream: str
    stream_entry_id: str | None = None
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetterAction:
        return cls(
            id=str(data["id"]),
            action=str(data["action"]),
            stream=str(data.get("stream") or ""),
            stream_entry_id=optional_str(data.get("stream_entry_id")),
            execution_id=optional_str(data.get("execution_id")),
            node_id=optional_str(data.get("node_id")),
            attempt=optional_int(data.get("attempt")),
            message=str(data.get("message") or ""),
        )
