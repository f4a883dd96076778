"""Control verbs against a compensation (saga), embedded and on PostgreSQL + Redis workers:
a forced cancel that comes in the same turn as the compensation it abandons sends nothing,
and a pause asked for while the execution compensates is recorded, not carried out."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrion.core.control import ABANDONED
from orchestrion.core.events import CancelRequested, ErrorInfo, NodeFailed
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import ErrorCategory
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from scaleout import engine_for, until

UNDONE: Counter[str] = Counter()


@function("saga_ctl_undo", replace=True)
async def saga_ctl_undo(ctx: NodeContext) -> str:
    UNDONE[ctx.execution_id] += 1
    return "undone"


@pytest.fixture(params=["sqlite", "scaleout"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    url = "scaleout" if request.param == "scaleout" else f"sqlite:///{tmp_path / 's.db'}"
    async with engine_for(url, request) as engine:
        yield engine


# a completes; b runs (a short sleep, long enough for the test to act on it).
ONE_TURN = {
    "name": "saga-one-turn",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop", "compensate": "saga_ctl_undo"},
            {
                "id": "b",
                "handler": "python",
                "dependencies": ["a"],
                "retry": {"max_attempts": 1},
                "config": {"function": "sleep", "params": {"seconds": 1.5}},
            },
        ]
    },
}


async def _running(engine: Engine, execution_id: str, node: str) -> None:
    async def running() -> bool:
        states = await engine.node_states(execution_id)
        return states.get(node) is NodeState.RUNNING

    await until(running, 20, f"{node} running")


async def test_a_compensation_abandoned_in_the_turn_that_asks_for_it_is_never_sent(
    engine: Engine,
) -> None:
    execution_id = (await engine.start_execution(ONE_TURN, {})).id
    await _running(engine, execution_id, "b")
    # b's failure (which starts the saga: a's compensation) and a forced cancel, in one turn.
    now = time.time()
    error = ErrorInfo(ErrorCategory.ERROR, "b went wrong", transient=False)
    engine.post(execution_id, NodeFailed("b", 1, now, error))
    engine.post(execution_id, CancelRequested(now, "stop now", force=True))
    result = await engine.wait(execution_id, timeout=10)
    assert result.status is ExecutionStatus.CANCELLED
    record = await engine.store.get_execution(execution_id)
    assert record.error is not None and ABANDONED in record.error["message"]
    assert record.error["abandoned"] == ["a"]  # a was not undone, and the record says so
    events = await engine.store.list_events(execution_id, types=[RecordType.EXECUTION_CANCELLED])
    assert events[-1].data is not None and events[-1].data["abandoned"] == ["a"]
    await asyncio.sleep(1.0)  # time enough for a compensation sent anyway to run
    assert UNDONE[execution_id] == 0
