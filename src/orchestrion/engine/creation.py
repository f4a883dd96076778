"""Group commit for new executions: the starts asked for in one event-loop tick share a commit.

Two hundred concurrent ``start_execution`` calls used to be two hundred transactions, each
writing the executions table and its four indexes; they are now one. A batch the store
refuses is tried again one record at a time, so a bad record (its definition deleted) fails
only its own caller and the others are created as if each had come alone.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable

from orchestrion.store.base import ExecutionRecord, Store

__all__ = ["ExecutionCreator"]

_Created = tuple[ExecutionRecord, bool]


class ExecutionCreator:
    """``create`` is ``store.create_execution``, batched with the other calls of the same tick.

    ``store`` gives the store to write to (the engine's, which is set when it starts).
    """

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store
        self._pending: list[tuple[ExecutionRecord, asyncio.Future[_Created]]] = []
        self._writes: set[asyncio.Task[None]] = set()

    async def create(
        self,
        record: ExecutionRecord,
        abandoned: Callable[[ExecutionRecord, bool], None] | None = None,
    ) -> _Created:
        """(stored record, whether it was created): see ``Store.create_execution``.

        The write happens even if the caller is cancelled meanwhile (it is shared with the
        other calls of the batch); ``abandoned`` is then called with what it gave.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Created] = loop.create_future()
        self._pending.append((record, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            if abandoned is not None:
                future.add_done_callback(functools.partial(_hand_over, abandoned))
            raise

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        task = asyncio.ensure_future(self._write(batch))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, batch: list[tuple[ExecutionRecord, asyncio.Future[_Created]]]) -> None:
        store = self._store()
        try:
            if len(batch) == 1:
                results = [await store.create_execution(batch[0][0])]
            else:
                results = await store.create_executions([record for record, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for record, future in batch:  # nothing was written: each on its own
                try:
                    _settle(future, await store.create_execution(record))
                except Exception as alone:
                    _settle(future, alone)
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result)


def _hand_over(
    abandoned: Callable[[ExecutionRecord, bool], None], future: asyncio.Future[_Created]
) -> None:
    if not future.cancelled() and future.exception() is None:
        abandoned(*future.result())


def _settle(future: asyncio.Future[_Created], outcome: _Created | Exception) -> None:
    if future.done():
        return
    if isinstance(outcome, Exception):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
