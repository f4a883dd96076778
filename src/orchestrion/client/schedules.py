"""What the client sends and reads about schedules (``/v1/schedules``): the calls, as data
like ``calls.py``, and the ``Schedule`` they return."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from orchestrion.client.calls import Call
from orchestrion.client.wire import timestamp

__all__ = [
    "SCHEDULE_VERBS",
    "Schedule",
    "ScheduleFiring",
    "get_schedule",
    "list_schedules",
    "schedule_action",
]

SCHEDULE_VERBS = ("pause", "resume", "trigger", "delete")


@dataclass(frozen=True, slots=True)
class ScheduleFiring:
    """One tick fired: ``pending`` until its execution starts, ``started`` or ``skipped``."""

    tick_at: float | None
    status: str
    execution_id: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ScheduleFiring:
        return cls(timestamp(data.get("tick_at")), str(data["status"]), data.get("execution_id"))


@dataclass(frozen=True, slots=True)
class Schedule:
    """A scheduled trigger of a definition; ``id`` is ``<definition name>:<trigger name>``."""

    id: str
    definition_name: str
    trigger: str
    state: str
    schedule: str
    timezone: str
    catchup: str = "skip"
    overlap: str = "allow"
    next_tick_at: float | None = None
    last_tick_at: float | None = None
    recent_firings: list[ScheduleFiring] = field(default_factory=list)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Schedule:
        return cls(
            id=str(data["id"]),
            definition_name=str(data["definition_name"]),
            trigger=str(data["trigger"]),
            state=str(data["state"]),
            schedule=str(data["schedule"]),
            timezone=str(data["timezone"]),
            catchup=str(data.get("catchup") or "skip"),
            overlap=str(data.get("overlap") or "allow"),
            next_tick_at=timestamp(data.get("next_tick_at")),
            last_tick_at=timestamp(data.get("last_tick_at")),
            recent_firings=[ScheduleFiring.from_api(f) for f in data.get("recent_firings") or []],
        )


def _path(schedule_id: str) -> str:
    return f"/v1/schedules/{quote(schedule_id, safe=':')}"


def _object(response: httpx.Response) -> dict[str, Any]:
    data = response.json()
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return data


def list_schedules() -> Call[list[Schedule]]:
    return Call(
        "GET",
        "/v1/schedules",
        lambda r: [Schedule.from_api(s) for s in _object(r).get("schedules") or []],
    )


def get_schedule(schedule_id: str) -> Call[Schedule]:
    return Call("GET", _path(schedule_id), lambda r: Schedule.from_api(_object(r)))


def schedule_action(schedule_id: str, verb: str) -> Call[Schedule | ScheduleFiring]:
    """``pause``, ``resume`` or ``delete`` (the schedule after it), or ``trigger`` (the
    firing it recorded)."""
    if verb not in SCHEDULE_VERBS:
        raise ValueError(f"unknown schedule verb {verb!r}")
    if verb == "trigger":
        return Call(
            "POST", f"{_path(schedule_id)}/trigger", lambda r: ScheduleFiring.from_api(_object(r))
        )
    method, path = (
        ("DELETE", _path(schedule_id))
        if verb == "delete"
        else ("POST", f"{_path(schedule_id)}/{verb}")
    )
    return Call(method, path, lambda r: Schedule.from_api(_object(r)))
