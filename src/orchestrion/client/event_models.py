"""What the client returns from the event journal: one event, and a page of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrion.client.wire import node_state, timestamp
from orchestrion.core.record_types import FINAL_EXECUTION_RECORDS
from orchestrion.core.states import NodeState

__all__ = ["FINAL_EVENT_TYPES", "Event", "EventPage"]

FINAL_EVENT_TYPES = FINAL_EXECUTION_RECORDS


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event journal (``seq`` is global and increasing)."""

    seq: int
    id: str
    type: str
    execution_id: str
    node_id: str | None = None
    attempt: int = 0
    at: float | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def node_state(self) -> NodeState | None:
        """A node event's new state (None for execution events or when not recorded)."""
        state = self.data.get("state")
        if self.node_id is None or state is None:
            return None
        return node_state(state)

    @property
    def is_final(self) -> bool:
        """True for the event that ends an execution (completed, failed or cancelled)."""
        return self.node_id is None and self.type in FINAL_EVENT_TYPES

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Event:
        return cls(
            seq=int(data["seq"]),
            id=str(data.get("id") or ""),
            type=str(data["type"]),
            execution_id=str(data["execution_id"]),
            node_id=data.get("node_id"),
            attempt=int(data.get("attempt") or 0),
            at=timestamp(data.get("at")),
            correlation_id=data.get("correlation_id"),
            causation_id=data.get("causation_id"),
            data=dict(data.get("data") or {}),
        )


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of events; ask again with ``after=next_after`` for the next."""

    items: list[Event]
    next_after: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> EventPage:
        items = [Event.from_api(item) for item in data.get("items") or []]
        fallback = items[-1].seq if items else 0
        return cls(items=items, next_after=int(data.get("next_after") or fallback))
