"""What the client sends and reads about event sinks (``/v1/admin/sinks``, admin role): the
calls, as data like ``calls.py``, and the ``SinkStatus`` and ``SinkDelivery`` they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

from orchestrion.client.calls import Call
from orchestrion.client.wire import timestamp

__all__ = [
    "SinkDelivery",
    "SinkStatus",
    "delivery_action",
    "list_deliveries",
    "list_sinks",
]


@dataclass(frozen=True, slots=True)
class SinkStatus:
    """A configured sink: what it owes (``owed`` to retry, ``dead`` letters) and, from the
    process publishing, its counters (None elsewhere)."""

    name: str
    type: str
    events: list[str] = field(default_factory=list)
    owed: int = 0
    dead: int = 0
    published: int | None = None
    failed: int | None = None
    dead_lettered: int | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> SinkStatus:
        return cls(
            name=str(data["name"]),
            type=str(data["type"]),
            events=[str(e) for e in data.get("events") or []],
            owed=int(data.get("owed") or 0),
            dead=int(data.get("dead") or 0),
            published=data.get("published"),
            failed=data.get("failed"),
            dead_lettered=data.get("dead_lettered"),
        )


@dataclass(frozen=True, slots=True)
class SinkDelivery:
    """An event one sink did not take: ``retry`` (sent again at ``next_at``) or ``dead``."""

    id: int
    sink: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    error: str | None
    next_at: float | None
    created_at: float | None
    event: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> SinkDelivery:
        event = data.get("event")
        return cls(
            id=int(data["id"]),
            sink=str(data["sink"]),
            event_id=str(data["event_id"]),
            event_type=str(data["event_type"]),
            status=str(data["status"]),
            attempts=int(data.get("attempts") or 0),
            error=data.get("error"),
            next_at=timestamp(data.get("next_at")),
            created_at=timestamp(data.get("created_at")),
            event=event if isinstance(event, dict) else {},
        )


def _object(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def list_sinks() -> Call[list[SinkStatus]]:
    return Call(
        "GET",
        "/v1/admin/sinks",
        lambda r: [SinkStatus.from_api(s) for s in _object(r).get("sinks") or []],
    )


def list_deliveries(
    status: str | None = None, sink: str | None = None, limit: int = 100
) -> Call[list[SinkDelivery]]:
    params = [("limit", str(limit))]
    if status is not None:
        params.append(("status", status))
    if sink is not None:
        params.append(("sink", sink))
    return Call(
        "GET",
        "/v1/admin/sinks/deliveries",
        lambda r: [SinkDelivery.from_api(d) for d in _object(r).get("items") or []],
        params=params,
    )


def delivery_action(delivery_id: int, verb: str) -> Call[SinkDelivery]:
    """``retry`` (due now) or ``drop`` a delivery."""
    path = f"/v1/admin/sinks/deliveries/{int(delivery_id)}"
    if verb == "retry":
        return Call("POST", f"{path}/retry", lambda r: SinkDelivery.from_api(_object(r)))
    if verb == "drop":
        return Call("DELETE", path, lambda r: SinkDelivery.from_api(_object(r)))
    raise ValueError(f"unknown delivery verb {verb!r}")
