"""One node attempt on a worker: run it, hold its start back a moment, seal its outcome.

An attempt that ends within ``START_HELD`` s sends its ``NodeStarted`` together with its
outcome (the worker's one transaction), so the orchestrator applies both in one turn; a longer
one sends the start on its own first. Its log lines (``NodeLogged``) go as the executor
reports them while it runs, and its last lines in the outcome's transaction, before the
outcome: an execution that the outcome finishes has them stored by then. A task of a
classified execution asks for its outcome, lines and rendered inputs to be sealed
(``cluster/on_wire.py``); a task the worker cannot open fails as ``configuration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrion.cluster.batching import Batch
from orchestrion.cluster.on_wire import seal_event, seals_outcome
from orchestrion.cluster.wire import encode_event
from orchestrion.core.events import (
    CompensationFailed,
    ErrorInfo,
    Event,
    NodeFailed,
    NodeLogged,
    NodeStarted,
)
from orchestrion.core.task_kinds import TaskKind
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import ErrorCategory, OrchestrionError

if TYPE_CHECKING:
    from orchestrion.execution.executor import NodeExecutor
    from orchestrion.governance.encryption import KeyRing

__all__ = ["START_HELD", "Outcome", "run_attempt", "unreadable_outcome"]

START_HELD = 0.05
"""Seconds a NodeStarted waits to be sent: an attempt that ends sooner sends it with its outcome."""


class Outcome(NamedTuple):
    """An attempt's outcome event, with what goes before it in its transaction: its start
    when that was held back until the end, and its last log lines."""

    execution_id: str
    event: Event
    started: list[dict[Any, Any]]


def unreadable_outcome(task: TaskMessage, exc: OrchestrionError) -> Outcome:
    """The failed attempt of a task this worker cannot open (no key, or not its key)."""
    error = ErrorInfo(
        ErrorCategory.CONFIGURATION, str(exc), transient=True, type=type(exc).__name__
    )
    now = time.time()
    if task.kind == TaskKind.COMPENSATE:
        return Outcome(task.execution_id, CompensationFailed(task.node_id, now, error), [])
    return Outcome(task.execution_id, NodeFailed(task.node_id, task.attempt, now, error), [])


async def run_attempt(
    executor: NodeExecutor,
    started_batch: Batch,
    keyring: KeyRing | None,
    task: TaskMessage,
    reply_to: str,
) -> Outcome | None:
    """Run ``task`` with ``executor``; its outcome (sealed when the task asks and there is a
    key ring), None when it produced none (cancelled). Its ``NodeStarted`` is sent to
    ``reply_to`` through ``started_batch`` after ``START_HELD`` s, or returned with the
    outcome when the attempt ended sooner."""
    loop = asyncio.get_running_loop()
    outcome: list[tuple[str, Event]] = []
    started: list[asyncio.Future[Any]] = []
    held: list[tuple[dict[Any, Any], asyncio.TimerHandle]] = []
    sent: set[int] = set()
    logged: list[dict[Any, Any]] = []
    sealing = keyring if seals_outcome(task) else None

    def send(message: dict[Any, Any]) -> None:
        sent.add(id(message))
        started.append(started_batch.add(lambda pipe: pipe.xadd(reply_to, message)))

    def send_logged() -> None:
        # The lines reported while the attempt runs go now; those reported with its outcome
        # (in the same call) stay for the outcome's transaction.
        if not outcome:
            while logged:
                send(logged.pop(0))

    def emit(execution_id: str, event: Event) -> None:
        if isinstance(event, NodeLogged):
            if sealing is not None:
                event = seal_event(sealing, execution_id, event)
            logged.append({"m": encode_event(execution_id, event)})
            loop.call_soon(send_logged)
        elif isinstance(event, NodeStarted):
            if sealing is not None and event.inputs is not None:  # its rendered config
                event = seal_event(sealing, execution_id, event)
            message: dict[Any, Any] = {"m": encode_event(execution_id, event)}
            # Held back a moment: an attempt that ends by then sends its start with its
            # outcome, in one transaction, so the orchestrator applies both in one turn.
            held.append((message, loop.call_later(START_HELD, send, message)))
        else:
            outcome.append((execution_id, event))

    # A handler with nothing to wait for (noop, condition, input...) runs here and now,
    # as the engine runs it in its turn: no coroutine chain, no timeout to arm.
    if not executor.run_now(task, emit):
        await executor.execute(task, emit)
    early = []
    for message, handle in held:
        if id(message) not in sent:
            handle.cancel()
            early.append(message)
    if started:
        with contextlib.suppress(Exception):  # "running" is informative only
            await asyncio.gather(*started)
    if not outcome:
        return None
    execution_id, event = outcome[-1]
    if sealing is not None:
        event = seal_event(sealing, execution_id, event)
    return Outcome(execution_id, event, early + logged)
