"""Embedded dispatch: node attempts run as asyncio tasks in this process, bounded by a semaphore.

An attempt whose handler has nothing to wait for (``HandlerSpec.run_now``) needs no task and
no slot: the engine runs it inline (``run_inline``), inside the turn that queued it, and
applies its outcome before that turn's commit; one dispatched all the same (the turn's inline
budget ran out) runs at once in ``dispatch``, its outcome in the engine's inbox for the next
turn.

Every other attempt starts at once too, in ``dispatch`` (``execution/eager.py``): it runs up
to its first suspension there, and becomes a task only if it suspends. ``dispatch`` is called
after the turn that queued the attempts is committed, so an attempt that completes without
suspending (an ``async def`` that awaits nothing slow) costs no task and no trip round the
event loop, and its outcome is in the inbox for the engine's next turn.

An attempt that does suspend (a ``def`` in a worker thread, an ``async def`` that awaits)
holds its ``NodeStarted`` back for ``START_HELD`` s: one that ends by then posts its start
with its outcome, so the engine applies and commits both in one turn instead of two. Recovery
dispatches a queued attempt and a running one alike (same attempt, same idempotency key), so
a start not yet committed changes nothing a crash leaves behind; the function itself runs only
once its dispatch is committed, as before.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Mapping
from typing import Any

from orchestrion.core.events import (
    CompensationFailed,
    ErrorInfo,
    Event,
    NodeFailed,
    NodeStarted,
)
from orchestrion.core.task_kinds import TaskKind
from orchestrion.dispatch.base import EventSink, TaskMessage
from orchestrion.errors import ErrorCategory
from orchestrion.execution.eager import start_eagerly
from orchestrion.execution.executor import NodeExecutor
from orchestrion.execution.slots import Slots

__all__ = ["START_HELD", "LocalDispatcher"]

logger = logging.getLogger(__name__)

_DECLINED_KEPT = 4096
START_HELD = 0.05
"""Seconds a suspended attempt's NodeStarted waits: one that ends sooner posts it with its
outcome (module docstring)."""


class _StartHeld:
    """The sink of one attempt: holds its ``NodeStarted`` until anything else is reported
    (its outcome, log lines), or for ``START_HELD`` s once the attempt has suspended: the
    start may come later than the first suspension (an attempt waiting for a free slot)."""

    __slots__ = ("held", "sink", "timer", "waiting")

    def __init__(self, sink: EventSink) -> None:
        self.sink = sink
        self.held: tuple[str, Event] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.waiting = False  # the attempt has suspended at least once

    def __call__(self, execution_id: str, event: Event) -> None:
        held = self.held
        if held is None:
            if type(event) is NodeStarted:
                self.held = (execution_id, event)
                if self.waiting:
                    self._arm()
                return
        else:  # its start goes first, in the same turn
            self.held = None
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            self.sink(*held)
        self.sink(execution_id, event)

    def suspended(self) -> None:
        """The attempt is waiting: its start goes by itself after ``START_HELD`` s."""
        self.waiting = True
        if self.held is not None:
            self._arm()

    def _arm(self) -> None:
        self.timer = asyncio.get_running_loop().call_later(START_HELD, self.flush)

    def flush(self) -> None:
        held, self.held = self.held, None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        if held is not None:
            self.sink(*held)


class LocalDispatcher:
    """Runs each dispatched attempt with ``executor`` in an asyncio task of its own.

    At most ``concurrency`` attempts run at once; the rest wait in arrival order. ``cancel``
    cancels the task of an attempt, which then reports nothing: the state machine has already
    recorded the node as cancelled.
    """

    def __init__(self, executor: NodeExecutor, concurrency: int = 64) -> None:
        self.executor = executor
        self.concurrency = concurrency
        self._slots = Slots(concurrency)
        self._tasks: dict[tuple[str, str, int, str], asyncio.Task[None]] = {}
        self._sink: EventSink | None = None
        self._closing = False
        # Attempts whose ``run_now`` declined in the engine's turn: ``dispatch`` does not ask
        # again (a python function declared inline that has to wait would run a third time).
        self._declined: set[tuple[str, str, int, str]] = set()

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
            if key in self._declined:
                self._declined.discard(key)
            elif not self._closing and self.executor.run_now(task, self._sink):
                continue
            emit = _StartHeld(self._sink)
            job = start_eagerly(self._run(task, emit), f"node:{task.node_id}")
            if job is None:
                if emit.held is not None:  # ended without an outcome (closing)
                    emit.flush()
                continue  # it ran to its end without suspending
            emit.suspended()
            self._tasks[key] = job
            job.add_done_callback(functools.partial(self._forget, key, emit))

    def can_run_inline(self, handler: str, config: Mapping[str, Any]) -> bool:
        return not self._closing and self.executor.has_run_now(handler, config)

    def run_inline(self, task: TaskMessage) -> list[Event] | None:
        key = (task.execution_id, task.node_id, task.attempt, task.kind)
        if self._closing or key in self._tasks:
            return None
        events: list[Event] = []
        if self.executor.run_now(task, lambda _execution_id, event: events.append(event)):
            return events
        if len(self._declined) >= _DECLINED_KEPT:
            self._declined.clear()  # those never dispatched (a failed commit): asked again
        self._declined.add(key)
        return None

    def _forget(
        self, key: tuple[str, str, int, str], emit: _StartHeld, _job: asyncio.Task[None]
    ) -> None:
        self._tasks.pop(key, None)
        emit.flush()  # cancelled after its start: the start still goes, as it did at once

    async def _run(self, task: TaskMessage, sink: EventSink) -> None:
        slots = self._slots
        if not slots.take_now():
            await slots.wait_for_one()
        try:
            if self._closing:
                return  # left queued in the store; the next start runs it
            await self.executor.execute(task, sink)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the executor reports everything itself; if it broke,
            # the attempt still fails, rather than leaving its node running for ever
            logger.exception("executor crashed on node %s", task.node_id)
            sink(task.execution_id, _crashed(task, exc))
        finally:
            slots.release()

    async def cancel(
        self, execution_id: str, node_id: str, attempt: int, kind: str = TaskKind.RUN
    ) -> None:
        # The attempt only, unless told: a compensation of the same node and attempt number
        # must still run (a forced cancel of the execution stops that too).
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


def _crashed(task: TaskMessage, exc: Exception) -> Event:
    """The failed attempt of a task the executor itself broke on."""
    error = ErrorInfo(
        ErrorCategory.ERROR,
        f"the executor failed while running this attempt ({type(exc).__name__})",
        transient=True,
        type=type(exc).__name__,
    )
    if task.kind == TaskKind.COMPENSATE:
        return CompensationFailed(task.node_id, time.time(), error)
    return NodeFailed(task.node_id, task.attempt, time.time(), error)
