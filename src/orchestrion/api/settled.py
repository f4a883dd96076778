"""The state a control request leads to, for the answer to that request.

In embedded mode the engine applies a request (cancel, pause, resume, retry, a decision, a
start) and commits it before the route answers. In scale-out mode the API hands the request to
the orchestrator driving the execution and the store changes a moment later: ``state_after``
reads the store until the request shows (the execution is cancelled, paused, resumed...) or
``SETTLE_SECONDS`` pass, so the answer carries the state after the request whenever the
orchestrators keep up, and otherwise the state to poll from, marked as not yet applied.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from orchestrion.api.models import ActionResponse
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.store.base import ExecutionRecord

__all__ = [
    "SETTLE_SECONDS",
    "Settled",
    "finished",
    "left",
    "reached",
    "started_answer",
    "state_after",
]

SETTLE_SECONDS = 5.0
"""How long an answer waits for an orchestrator to apply a request it handed over."""

_POLL_SECONDS = 0.05

Check = Callable[[ExecutionRecord], Awaitable[bool] | bool]


@dataclass(frozen=True, slots=True)
class Settled:
    """The execution after a request, and whether the request shows in it yet."""

    record: ExecutionRecord
    applied: bool


def reached(*statuses: ExecutionStatus) -> Check:
    """Applied once the execution is in one of ``statuses`` or final."""
    wanted = {*statuses, *FINAL_EXECUTION_STATES}
    return lambda record: record.status in wanted


def left(status: ExecutionStatus) -> Check:
    """Applied once the execution is no longer in ``status``."""
    return lambda record: record.status is not status


def finished(before: ExecutionRecord) -> Check:
    """A retry: applied once the execution runs again, or finished again after ``before``."""

    def check(record: ExecutionRecord) -> bool:
        if record.status not in FINAL_EXECUTION_STATES:
            return True
        return (record.finished_at or 0.0) > (before.finished_at or 0.0)

    return check


async def state_after(
    engine: Engine, execution_id: str, check: Check, *, wait: float = SETTLE_SECONDS
) -> Settled:
    """The execution once ``check`` holds, or as it is after ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        record = await engine.reads.execution(execution_id)
        verdict = check(record)
        if not isinstance(verdict, bool):
            verdict = await verdict
            if verdict:
                # The check read more rows after ``record``: the commit it saw may have landed
                # between the two reads, so the record read first can predate it.
                record = await engine.reads.execution(execution_id)
        if verdict or time.monotonic() >= deadline:
            return Settled(record, verdict)
        await asyncio.sleep(_POLL_SECONDS)


async def started_answer(engine: Engine, execution_id: str) -> ActionResponse:
    """The answer to a start: its state now. In scale-out mode a start is handed to the
    orchestrators (or, when the queue failed, to their sweep of pending starts) and the
    answer does not wait for one to claim it: ``PENDING``, to poll from. An engine that
    drives its executions committed the start before the trigger returned: nothing to read."""
    if not engine.drives and (
        (await engine.reads.execution(execution_id)).status is ExecutionStatus.PENDING
    ):
        return ActionResponse(
            execution_id=execution_id,
            status="PENDING",
            message="Workflow accepted; an orchestrator starts it"
            f" (poll GET /v1/workflows/{execution_id} for its state)",
        )
    # Started: RUNNING, as the reference shape has it, even when a quick one already ended.
    return ActionResponse(
        execution_id=execution_id, status="RUNNING", message="Workflow started successfully"
    )
