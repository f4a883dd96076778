"""``Sink``: what every event sink implements, and what it answers for each event.

``publish`` takes a page of events (and a deadline) and answers, per event and in order,
``None`` when the sink took it or the reason it did not (retried later by the publisher, with
backoff, then a dead letter). It raises only for a bug; a sink that cannot be reached answers
the reason for every event. Connections are made on first use, so a sink that is down does
not stop a start.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, Protocol, TypeVar

from orchestrion.sinks.envelope import OutboundEvent

__all__ = [
    "NOT_SENT",
    "Configured",
    "Outcome",
    "Sink",
    "SinkConfig",
    "all_failed",
    "close_quietly",
    "describe",
]

Outcome = str | None
"""``None``: taken; otherwise why not (one line, no secret)."""

NOT_SENT = "not sent:"
"""How an outcome starts when the event was held back, not tried (behind an event of its
execution that was not taken, or the host is down): it does not count as an attempt."""


class Sink(Protocol):
    """An event sink (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def wants(self, event_type: str) -> bool:
        """Whether events of this type go here (the sink's ``events`` patterns)."""

    async def publish(
        self, events: Sequence[OutboundEvent], *, deadline: float | None = None
    ) -> list[Outcome]:
        """``deadline`` (``time.monotonic()``): a sink that sends event by event starts no
        send after it and answers ``NOT_SENT`` for the rest; a sink that sends the page at once
        may ignore it (its own timeout bounds it)."""

    async def close(self) -> None: ...


def all_failed(events: Sequence[OutboundEvent], reason: str) -> list[Outcome]:
    """The same reason for every event of a page."""
    return [reason] * len(events)


def describe(exc: BaseException) -> str:
    """A one-line reason of ``exc`` (its type, and its message cut to 300 characters)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


class SinkConfig(Protocol):
    """What every sink's configuration answers: its name and the events it wants."""

    @property
    def name(self) -> str: ...

    def wants(self, event_type: str) -> bool: ...


C = TypeVar("C", bound=SinkConfig)


class Configured(Generic[C]):
    """A sink's ``name`` and ``wants``, both answered by its configuration ``config``."""

    config: C

    @property
    def name(self) -> str:
        return self.config.name

    def wants(self, event_type: str) -> bool:
        return self.config.wants(event_type)


async def close_quietly(close: Callable[[], Awaitable[object]], seconds: float) -> None:
    """Await ``close()`` for at most ``seconds``, whatever it raises: a connection given up
    (broken, or never made) has nothing more to flush."""
    try:
        async with asyncio.timeout(seconds):
            await close()
    except Exception:
        return
