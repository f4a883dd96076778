"""Batched Redis round trips of a worker: commands and reads of one loop tick go together.

The attempts of one read start in the same loop tick and often end together: ``Batch``
sends the commands they queue in one pipeline (the outcomes' one as a transaction, each
attempt's part of it staying atomic), and ``Reads`` reads the keys they want in one MGET.
Each caller awaits its own future, which carries the pipeline's error when it failed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from orchestrion.cluster.streams import WORKER_GROUP

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

__all__ = ["Batch", "Reads"]

_Queued = tuple[Callable[["Pipeline"], Any], tuple[str, bytes] | None, asyncio.Future[None]]


class Batch:
    """Collects Redis commands from many coroutines and sends them in one pipeline per loop
    tick; each caller awaits the pipeline's outcome."""

    def __init__(self, redis: Callable[[], Redis], *, transaction: bool) -> None:
        self._redis = redis
        self._transaction = transaction
        self._queued: list[_Queued] = []
        self._sending: set[asyncio.Task[None]] = set()

    def add(
        self, commands: Callable[[Pipeline], Any], *, ack: tuple[str, bytes] | None = None
    ) -> asyncio.Future[None]:
        """Queue ``commands``; ``ack``, a task entry to acknowledge and delete after them
        (one XACK and one XDEL per stream for the whole batch)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if not self._queued:
            loop.call_soon(lambda: self._spawn(loop))
        self._queued.append((commands, ack, future))
        return future

    def _spawn(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._queued:
            return  # a drain sent it already
        batch, self._queued = self._queued, []
        job = loop.create_task(self._send(batch))
        self._sending.add(job)
        job.add_done_callback(self._sending.discard)

    async def drain(self) -> None:
        """Send what is queued and wait for every pipeline in flight: a stopping worker
        calls it before closing its client, which a pipeline still sending would reopen."""
        await _drain(self._queued, self._spawn, self._sending)

    async def _send(self, batch: list[_Queued]) -> None:
        acks: dict[str, list[bytes]] = {}
        try:
            async with self._redis().pipeline(transaction=self._transaction) as pipe:
                for commands, ack, _ in batch:
                    commands(pipe)
                    if ack is not None:
                        acks.setdefault(ack[0], []).append(ack[1])
                for stream, ids in acks.items():
                    pipe.xack(stream, WORKER_GROUP, *ids)
                    pipe.xdel(stream, *ids)
                await pipe.execute()
        except Exception as exc:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for _, _, future in batch:
            if not future.done():
                future.set_result(None)


class Reads:
    """Collects the keys many coroutines want to read and reads them in one MGET per loop
    tick: the tasks of one stream read all start in the same tick, so each read costs one
    round trip for its guards instead of one per task."""

    def __init__(self, redis: Callable[[], Redis]) -> None:
        self._redis = redis
        self._queued: list[tuple[tuple[str, ...], asyncio.Future[list[bytes | None]]]] = []
        self._reading: set[asyncio.Task[None]] = set()

    def get(self, *keys: str) -> asyncio.Future[list[bytes | None]]:
        """The values of ``keys`` (None where missing), from the next MGET."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[bytes | None]] = loop.create_future()
        if not self._queued:
            loop.call_soon(lambda: self._spawn(loop))
        self._queued.append((keys, future))
        return future

    def _spawn(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self._queued:
            return  # a drain sent it already
        batch, self._queued = self._queued, []
        job = loop.create_task(self._read(batch))
        self._reading.add(job)
        job.add_done_callback(self._reading.discard)

    async def drain(self) -> None:
        """Read what is queued and wait for every read in flight (see ``Batch.drain``)."""
        await _drain(self._queued, self._spawn, self._reading)

    async def _read(
        self, batch: list[tuple[tuple[str, ...], asyncio.Future[list[bytes | None]]]]
    ) -> None:
        keys = [key for wanted, _ in batch for key in wanted]
        try:
            values = cast("list[bytes | None]", await self._redis().mget(keys))
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for wanted, future in batch:
            if not future.done():
                future.set_result(values[start : start + len(wanted)])
            start += len(wanted)


async def _drain(
    queued: list[Any],
    spawn: Callable[[asyncio.AbstractEventLoop], None],
    running: set[asyncio.Task[None]],
) -> None:
    if queued:
        spawn(asyncio.get_running_loop())  # its ``call_soon`` then finds nothing to send
    if running:
        await asyncio.gather(*running, return_exceptions=True)
