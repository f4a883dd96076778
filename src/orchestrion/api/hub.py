"""Wakes event streams when the engine commits records, instead of polling blindly.

The engine calls ``EventHub.notify`` (a record listener) after each commit. A stream takes a
``waiter`` for its execution (or for all executions) *before* it reads the journal, reads,
and if nothing was new waits on it: a commit between the read and the wait has already set
the event, so no wake-up is lost. Each notification replaces the events it set, so a waiter
fires once. Streams ``watch`` their key for as long as they run, so the events of keys nobody
watches any more are dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

from orchestrion.core.events import Record

__all__ = ["EventHub"]


class EventHub:
    """One asyncio.Event per watched key (an execution id, or None for every execution)."""

    def __init__(self) -> None:
        self._events: dict[str | None, asyncio.Event] = {}
        self._watchers: dict[str | None, int] = {}

    @contextmanager
    def watch(self, execution_id: str | None) -> Iterator[None]:
        """Hold ``execution_id`` watched while a stream runs."""
        self._watchers[execution_id] = self._watchers.get(execution_id, 0) + 1
        try:
            yield
        finally:
            left = self._watchers[execution_id] - 1
            if left:
                self._watchers[execution_id] = left
            else:
                del self._watchers[execution_id]
                self._events.pop(execution_id, None)

    def waiter(self, execution_id: str | None) -> asyncio.Event:
        """The event set at the next commit touching ``execution_id`` (None: any commit)."""
        event = self._events.get(execution_id)
        if event is None:
            event = self._events[execution_id] = asyncio.Event()
        return event

    def notify(self, execution_id: str, records: list[Record]) -> None:
        """Record listener: wake the streams of this execution and the global streams."""
        for key in (execution_id, None):
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    def close(self) -> None:
        """Wake every waiting stream (the app is shutting down)."""
        events, self._events = self._events, {}
        for event in events.values():
            event.set()
