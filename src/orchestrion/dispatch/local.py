"""Embedded dispatch: node attempts run as asyncio tasks in this process, bounded by a semaphore.

An attempt whose handler has nothing to wait for (``HandlerSpec.run_now``) runs at once, in
the engine's turn that dispatched it: no task, no slot, and its outcome is in the engine's
inbox before the turn ends.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from orchestrion.dispatch.base import EventSink, TaskMessage
from orchestrion.runtime.executor import NodeExecutor

__all__ = ["LocalDispatcher"]

logger = logging.getLogger(__name__)


class LocalDispatcher:
    """Runs each dispatched attempt with ``executor`` in an asyncio task of its own.

    At most ``concurrency`` attempts run at once; the rest wait in arrival order. ``cancel``
    cancels the task of an attempt, which then reports nothing: the state machine has already
    recorded the node as cancelled.
    """

    def __init__(self, executor: NodeExecutor, concurrency: int = 64) -> None:
        self.executor = executor
        self.concurrency = concurrency
        self._semaphore = asyncio.Semaphore(concurrency)
        self._tasks: dict[tuple[str, str, int, str], asyncio.Task[None]] = {}
        self._sink: EventSink | None = None
        self._closing = False

    async def start(self, on_event: EventSink) -> None:
        self._sink = on_event
        self._closing = False

    async def dispatch(self, tasks: list[TaskMessage]) -> None:
        if self._sink is None:
            raise RuntimeError("dispatcher not started")
        for task in tasks:
            key = (task.execution_id, task.node_id, task.attempt, task.kind)
            if key in self._tasks:
                continue  # the same attempt is already in flight here
            if not self._closing and self.executor.run_now(task, self._sink):
                continue
            job = asyncio.create_task(self._run(task), name=f"node:{task.node_id}")
            self._tasks[key] = job
            job.add_done_callback(functools.partial(self._forget, key))

    def _forget(self, key: tuple[str, str, int, str], _job: asyncio.Task[None]) -> None:
        self._tasks.pop(key, None)

    async def _run(self, task: TaskMessage) -> None:
        sink = self._sink
        assert sink is not None
        async with self._semaphore:
            if self._closing:
                return  # left queued in the store; the next start runs it
            try:
                await self.executor.execute(task, sink)
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - the executor reports everything itself
                logger.exception("executor crashed on node %s", task.node_id)

    async def cancel(self, execution_id: str, node_id: str, attempt: int) -> None:
        for kind in ("run", "compensate"):
            job = self._tasks.get((execution_id, node_id, attempt, kind))
            if job is not None:
                job.cancel()

    def in_flight(self) -> int:
        return len(self._tasks)

    async def close(self, grace: float = 0.0) -> None:
        """Stop starting attempts; wait up to ``grace`` s for running ones, then cancel them."""
        self._closing = True
        pending = list(self._tasks.values())
        if pending and grace > 0:
            await asyncio.wait(pending, timeout=grace)
        for job in list(self._tasks.values()):
            job.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
