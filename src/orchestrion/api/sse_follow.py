"""Following a journal-like sequence over Server-Sent Events: the one loop both the event
stream and the node-log stream run.

Each pass reads a page after the last sequence number sent, sends it as one chunk, and when
nothing is left waits for the hub's next commit notice (or the poll interval), with keep-alive
comments while quiet. It ends once the execution was final before the page was read and the
page came back short, when the server closes, when ``alive()`` says the caller may no longer
read it (its session ended: ``stream_slots.OpenStream.alive``), or on a store error (the client
resumes with Last-Event-ID).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Protocol, TypeVar

from orchestrion.api.context import ApiContext
from orchestrion.errors import OrchestrionError

__all__ = ["follow"]

logger = logging.getLogger(__name__)


class _Sequenced(Protocol):
    @property
    def seq(self) -> int: ...


Item = TypeVar("Item", bound=_Sequenced)

ReadPage = Callable[[int], Awaitable[tuple[bool, Sequence[Item]]]]
"""``read(after)``: whether the execution was final before the read, and the page after."""


async def follow(
    ctx: ApiContext,
    execution_id: str | None,
    after: int,
    batch: int,
    read: ReadPage[Item],
    encode: Callable[[Item], str],
    what: str,
    alive: Callable[[], bool] = lambda: True,
) -> AsyncIterator[str]:
    """Yield ``encode(item)`` for each item after ``after``, as they are committed."""
    settings = ctx.settings
    quiet_since = time.monotonic()
    # Checked at every wake-up (a commit, the poll interval, a keep-alive), before any read:
    # nothing is sent once the caller's session has ended.
    while not ctx.closing and alive():
        waiter = ctx.hub.waiter(execution_id)  # before reading: no commit goes unnoticed
        try:
            final, items = await read(after)
        except OrchestrionError:
            # The client reconnects with Last-Event-ID and loses nothing.
            logger.warning("%s stream ended by a store error", what, exc_info=True)
            return
        if items:
            # One chunk per page: each chunk is a message through every ASGI layer and a
            # write on the socket, which cost a stream more than encoding its events.
            yield "".join([encode(item) for item in items])
            after = items[-1].seq
            quiet_since = time.monotonic()
        if len(items) == batch:
            continue
        if final:
            return
        silent = time.monotonic() - quiet_since
        if silent >= settings.sse_keepalive:
            yield ": keep-alive\n\n"
            quiet_since = time.monotonic()
            continue
        timeout = min(settings.sse_poll, settings.sse_keepalive - silent)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(waiter.wait(), timeout)
