"""The wire format of scale-out messages: task messages and state-machine events as JSON.

Every message carries ``v`` (the schema version). A reader accepts its own version and older
ones it knows how to read; a message from a newer writer is refused with ``WireError`` naming
both versions, and the caller parks it (DLQ) instead of guessing. Fields a reader does not know
are ignored, so adding an optional field does not need a new version.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, Final

from orchestrion.core import events as ev
from orchestrion.dispatch.base import SCHEMA_VERSION, TaskMessage
from orchestrion.errors import WireError
from orchestrion.governance.trust import Trust

__all__ = [
    "SCHEMA_VERSION",
    "WireError",
    "decode_event",
    "decode_task",
    "encode_event",
    "encode_task",
    "loads",
]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode

_EVENT_TYPES: Final[dict[str, type[Any]]] = {
    cls.__name__: cls
    for cls in (
        ev.Started,
        ev.NodeStarted,
        ev.NodeSucceeded,
        ev.NodeFailed,
        ev.NodeSkipped,
        ev.NodeWaiting,
        ev.NodeLogged,
        ev.WaitResolved,
        ev.TimerFired,
        ev.CancelRequested,
        ev.PauseRequested,
        ev.ResumeRequested,
        ev.RetryRequested,
        ev.ExecutionTimedOut,
        ev.CompensationSucceeded,
        ev.CompensationFailed,
    )
}
_TASK_FIELDS: Final = frozenset(f.name for f in dataclasses.fields(TaskMessage))
_TUPLE_FIELDS: Final = ("dependencies", "capabilities")


def loads(raw: bytes | str) -> dict[str, Any]:
    """Parse one message and check its schema version."""
    try:
        data = json.loads(raw)
    except (TypeError, ValueError) as exc:
        raise WireError(f"message is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise WireError("message is not a JSON object")
    version = data.get("v")
    if not isinstance(version, int) or version < 1:
        raise WireError(f"message has no valid schema version (v={version!r})")
    if version > SCHEMA_VERSION:
        raise WireError(
            f"message schema version {version} is newer than this process reads"
            f" ({SCHEMA_VERSION}): upgrade this process"
        )
    return data


def encode_task(task: TaskMessage, **envelope: Any) -> str:
    """``task`` with envelope fields (``reply_to``, ``deliveries``...) as one JSON text."""
    body = {f: getattr(task, f) for f in _TASK_FIELDS}
    for name in _TUPLE_FIELDS:
        body[name] = list(body[name])
    return _dumps({"v": SCHEMA_VERSION, "task": body, **envelope})


def decode_task(data: dict[str, Any]) -> TaskMessage:
    body = data.get("task")
    if not isinstance(body, dict):
        raise WireError("task message has no 'task' object")
    known = {k: v for k, v in body.items() if k in _TASK_FIELDS}
    for name in _TUPLE_FIELDS:
        if name in known:
            known[name] = tuple(known[name] or ())
    # Absent (an older orchestrator), unknown or malformed: untrusted, never trusted.
    known["trust"] = Trust.of(known.get("trust"))
    try:
        return TaskMessage(**known)
    except TypeError as exc:
        raise WireError(f"task message is incomplete: {exc}") from exc


def event_to_dict(event: ev.Event) -> dict[str, Any]:
    body: dict[str, Any] = {"type": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        body[f.name] = value.to_dict() if isinstance(value, ev.ErrorInfo) else value
    return body


def event_from_dict(body: dict[str, Any]) -> ev.Event:
    name = body.get("type")
    cls = _EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise WireError(f"unknown event type {name!r}")
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in body:
            continue
        value = body[f.name]
        if f.name == "error" and isinstance(value, dict):
            value = ev.ErrorInfo.from_dict(value)
        elif f.name == "lines":  # NodeLogged: a list on the wire, of dicts only
            if not isinstance(value, list) or not all(isinstance(x, dict) for x in value):
                raise WireError(f"event {name} has lines that are not a list of objects")
            value = tuple(value)
        elif f.name == "inputs" and value is not None and not isinstance(value, dict):
            raise WireError(f"event {name} has inputs that are not an object")
        kwargs[f.name] = value
    try:
        event: ev.Event = cls(**kwargs)
    except TypeError as exc:
        raise WireError(f"event {name} is incomplete: {exc}") from exc
    return event


def encode_event(execution_id: str, event: ev.Event, **envelope: Any) -> str:
    """One event for ``execution_id`` (a completion, or a control request) as JSON."""
    return _dumps(
        {"v": SCHEMA_VERSION, "execution_id": execution_id, "event": event_to_dict(event)}
        | envelope
    )


def decode_event(data: dict[str, Any]) -> tuple[str, ev.Event]:
    execution_id = data.get("execution_id")
    body = data.get("event")
    if not isinstance(execution_id, str) or not isinstance(body, dict):
        raise WireError("event message needs 'execution_id' and an 'event' object")
    return execution_id, event_from_dict(body)
