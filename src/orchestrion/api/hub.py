"""Wakes event streams when the engine commits records, instead of polling blindly, and lets
the streams woken by one commit share what they read.

The engine calls ``EventHub.notify`` (a record listener) after each commit. A stream takes a
``waiter`` for its execution (or for all executions) *before* it reads the journal, reads,
and if nothing was new waits on it: a commit between the read and the wait has already set
the event, so no wake-up is lost. Each notification replaces the events it set, so a waiter
fires once. Streams ``watch`` their key for as long as they run, so the events of keys nobody
watches any more are dropped.

Every stream of a key wakes at the same commit and reads the same rows: ``shared`` reads
them once. What one stream read serves the others until the key's next notification (which
is what would make it stale) or, for what other processes wrote without a notification
(found by the streams' polling), for at most ``shared_for`` seconds. A read that a
notification overtook while it ran is not kept: it may predate the commit notified.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from orchestrion.core.events import Record

__all__ = ["EventHub"]

T = TypeVar("T")

_MAX_SHARED = 1_000  # reads kept per key between two commits (one per distinct page asked)


class EventHub:
    """One asyncio.Event per watched key (an execution id, or None for every execution),
    and the reads its streams share until the key's next commit."""

    def __init__(self, shared_for: float = 0.5) -> None:
        self.shared_for = shared_for
        self._events: dict[str | None, asyncio.Event] = {}
        self._watchers: dict[str | None, int] = {}
        self._notices = 0  # notifications so far: a read they overtook is not kept
        self._shared: dict[str | None, dict[Hashable, tuple[float, Any]]] = {}

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
                self._shared.pop(execution_id, None)

    def waiter(self, execution_id: str | None) -> asyncio.Event:
        """The event set at the next commit touching ``execution_id`` (None: any commit)."""
        event = self._events.get(execution_id)
        if event is None:
            event = self._events[execution_id] = asyncio.Event()
        return event

    async def shared(self, key: str | None, what: Hashable, read: Callable[[], Awaitable[T]]) -> T:
        """``read()``, or what a stream of ``key`` read for the same ``what`` since the key's
        last commit (and within ``shared_for`` seconds). The value is shared: never change it."""
        now = time.monotonic()
        found = self.kept(key, what, now)
        if found is not None:
            value: T = found
            return value
        notices = self._notices
        value = await read()
        if self._notices == notices:
            self.keep(key, what, value, now)
        return value

    def kept(self, key: str | None, what: Hashable, now: float | None = None) -> Any | None:
        """What a stream of ``key`` kept for ``what`` since the key's last commit, or None."""
        kept = self._shared.get(key)
        if kept is None:
            return None
        found = kept.get(what)
        if found is None:
            return None
        if (time.monotonic() if now is None else now) - found[0] >= self.shared_for:
            return None
        return found[1]

    def keep(self, key: str | None, what: Hashable, value: Any, now: float | None = None) -> None:
        """Share ``value`` with the streams of ``key`` until its next commit (only while
        some stream watches it). ``value`` must hold for anything read since that commit."""
        if key not in self._watchers:
            return
        kept = self._shared.setdefault(key, {})
        if len(kept) >= _MAX_SHARED:
            kept.clear()
        kept[what] = (time.monotonic() if now is None else now, value)

    def notify(self, execution_id: str, records: list[Record]) -> None:
        """Record listener: wake the streams of this execution and the global streams."""
        self._notices += 1
        for key in (execution_id, None):
            self._shared.pop(key, None)
            event = self._events.pop(key, None)
            if event is not None:
                event.set()

    @property
    def watching(self) -> bool:
        """Whether any stream runs now."""
        return bool(self._watchers)

    def notify_written(self, execution_ids: set[str] | None) -> None:
        """Wake the streams of these executions (None: of every execution), which another
        process wrote to, and the global streams."""
        if not self._watchers or (execution_ids is not None and not execution_ids):
            return
        keys = list(self._watchers) if execution_ids is None else execution_ids
        watched = [key for key in keys if key is not None and key in self._watchers]
        for execution_id in watched:
            self.notify(execution_id, [])
        if not watched:
            self.notify("", [])  # no stream of these executions: wakes the global streams

    def close(self) -> None:
        """Wake every waiting stream (the app is shutting down)."""
        events, self._events = self._events, {}
        self._shared.clear()
        for event in events.values():
            event.set()
