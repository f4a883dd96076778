"""Idempotency keys the engine makes itself, kept apart from the keys callers give.

An execution's idempotency key is unique across the whole store: whoever holds a key holds
the execution made with it. The engine derives keys for the executions it starts on its own
(an event's subscribers, a schedule's ticks, a ``workflow`` node's child), so a caller who
could send such a key first would decide what that start does: run another definition with
the event's payload, or nothing at all. Keys with the engine's prefixes are therefore refused
from callers (``caller_key_problem``; ``caller_key`` for the Python API, where the engine's own
starts pass the ``EngineKey`` it derived), and a derived key always fits the stored column (255
characters) and names one start only, however long or oddly punctuated its parts are.
"""

from __future__ import annotations

import hashlib

from orchestrion.errors import ReservedIdempotencyKey

__all__ = [
    "ENGINE_KEY_PREFIXES",
    "MAX_KEY_LENGTH",
    "EngineKey",
    "bounded_key",
    "caller_key",
    "caller_key_problem",
    "event_key",
]

ENGINE_KEY_PREFIXES = ("event:", "schedule:", "child:")
"""Prefixes of the keys the engine derives (events, schedule ticks, child workflows)."""

MAX_KEY_LENGTH = 255
"""The longest key the stores keep (the column's width)."""


def caller_key_problem(key: str) -> str | None:
    """Why a caller may not use ``key`` (it is one the engine derives), or None."""
    for prefix in ENGINE_KEY_PREFIXES:
        if key.lower().startswith(prefix):
            return (
                f"an Idempotency-Key may not begin with '{prefix}': keys with the prefixes"
                f" {', '.join(ENGINE_KEY_PREFIXES)} are the engine's own"
            )
    return None


class EngineKey(str):
    """A key the engine derived for a start of its own (``bounded_key``, ``event_key``): the
    only kind of key that may carry one of ``ENGINE_KEY_PREFIXES`` into a start."""

    __slots__ = ()


def caller_key(key: str | None) -> str | None:
    """``key`` as a plain ``str`` when the caller of a start may give it (None stays None);
    raises ``ReservedIdempotencyKey`` for one with the engine's prefixes that the engine did
    not derive (what the API's 422 and the CLI's exit 2 refuse)."""
    if key is None:
        return None
    if not isinstance(key, EngineKey) and caller_key_problem(key) is not None:
        raise ReservedIdempotencyKey(
            f"idempotency key {key!r} is reserved: keys beginning with"
            f" {', '.join(ENGINE_KEY_PREFIXES)} (in any case) are the ones the engine derives"
            " for the executions it starts itself (events, schedule ticks, child workflows);"
            " nothing was started"
        )
    return str(key)


def bounded_key(prefix: str, parts: tuple[str, ...], readable: str) -> EngineKey:
    """``prefix`` + ``readable`` when it fits, else a digest of ``parts`` with as much of
    ``readable`` as fits after it (still one key per ``parts``)."""
    key = prefix + readable
    if len(key) <= MAX_KEY_LENGTH:
        return EngineKey(key)
    return EngineKey(f"{prefix}{_digest(parts)}:{readable}"[:MAX_KEY_LENGTH])


def event_key(event_type: str, event_id: str, workflow: str) -> EngineKey:
    """The key of the execution of ``workflow`` that the event (type, id) starts.

    Two events with the same id but different types are different events; a digest keeps
    ids and names that contain ``:`` from meeting (``a:b`` + ``c`` and ``a`` + ``b:c``)."""
    parts = (event_type, event_id, workflow)
    return EngineKey(f"event:{_digest(parts)}:{event_type}:{event_id}:{workflow}"[:MAX_KEY_LENGTH])


def _digest(parts: tuple[str, ...]) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:32]
