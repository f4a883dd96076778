"""Control verbs against a compensation (saga), embedded and on PostgreSQL + Redis workers:
a forced cancel that comes in the same turn as the compensation it abandons sends nothing,
and a pause asked for while the execution compensates is recorded, not carried out."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from orchestrion.api import create_app
from orchestrion.cli.app import app as cli
from orchestrion.core.control import ABANDONED
from orchestrion.core.events import CancelRequested, ErrorInfo, NodeFailed
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import ErrorCategory
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings
from saga_flows import slow_undo_saga
from scaleout import engine_for, scaleout_engine, scaleout_settings, until

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


# a completes; b fails; a's compensation then takes 2 s: time to ask for a pause.
SLOW_SAGA = slow_undo_saga("saga-slow-undo", 2)


@contextlib.asynccontextmanager
async def http_api(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    """The API app over an embedded engine, or over an engine that drives nothing beside a
    cluster (scale-out: what it is asked goes to the orchestrator over Redis)."""
    async with contextlib.AsyncExitStack() as stack:
        if mode == "sqlite":
            settings = load_settings(
                database_url=f"sqlite:///{tmp_path / 'api.db'}",
                rate_limit_per_second=0,
                shutdown_grace=0,
            )
            engine = await stack.enter_async_context(Engine(settings=settings))
        else:
            postgres = request.getfixturevalue("postgres_url")
            redis = request.getfixturevalue("redis_server")
            prefix = request.getfixturevalue("redis_prefix")
            await stack.enter_async_context(scaleout_engine(postgres, redis, prefix))
            settings = scaleout_settings(postgres, redis, prefix, rate_limit_per_second=0)
            engine = await stack.enter_async_context(Engine(settings=settings, drive=False))
        app = create_app(engine, settings)
        await stack.enter_async_context(app.router.lifespan_context(app))
        transport = httpx.ASGITransport(app=app)
        client = httpx.AsyncClient(transport=transport, base_url="http://api")
        await stack.enter_async_context(client)
        yield client, engine


async def _compensating(engine: Engine, flow: dict[str, object]) -> str:
    execution_id = (await engine.start_execution(await engine.submit(flow))).id

    async def compensating() -> bool:
        events = await engine.store.list_events(
            execution_id, types=[RecordType.EXECUTION_COMPENSATING]
        )
        return bool(events)

    await until(compensating, 20, "the execution compensating")
    return execution_id


@pytest.mark.parametrize("mode", ["sqlite", "scaleout"])
async def test_a_pause_while_compensating_is_recorded_and_the_api_says_so(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with http_api(mode, request, tmp_path) as (client, engine):
        execution_id = await _compensating(engine, SLOW_SAGA)
        base = f"/v1/workflows/{execution_id}"
        answer = await client.post(f"{base}/pause")
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "RUNNING", answer.json()
        assert answer.json()["message"].startswith("Pause recorded, not carried out")
        assert "force=true" in answer.json()["message"]
        shown = (await client.get(base)).json()
        assert shown["status"] == "RUNNING"
        assert "pause_requested" in shown["error"]
        refused = await client.post(f"{base}/resume")  # nothing is paused
        assert refused.status_code == 409, refused.text

        async def failed() -> bool:
            return (await client.get(base)).json()["status"] == "FAILED"

        await until(failed, 20, "the compensation's end")
        shown = (await client.get(base)).json()
    assert shown["nodes"]["a"]["state"] == "COMPENSATED"  # it ran to its end
    assert "pause requested while compensating: not paused" in shown["error"]["message"]


def test_the_command_line_says_a_pause_while_compensating_was_only_recorded(
    tmp_path: Path,
) -> None:
    db = tmp_path / "cli.db"

    async def go() -> None:
        # An engine of its own drives the saga; the command is another process's request.
        async with Engine(f"sqlite:///{db}") as engine:
            execution_id = await _compensating(engine, SLOW_SAGA)
            ran = await asyncio.to_thread(
                CliRunner().invoke, cli, ["pause", execution_id, "--db", str(db)]
            )
            assert ran.exit_code == 0, ran.output
            assert f"pause of {execution_id} recorded, not carried out" in ran.output
            assert "paused " not in ran.output
            record = await engine.store.get_execution(execution_id)
            assert record.status is ExecutionStatus.RUNNING
            result = await engine.wait(execution_id, timeout=20)
            assert result.status is ExecutionStatus.FAILED

    asyncio.run(go())


FAILED_ONCE: set[str] = set()


@function("saga_ctl_fails_once", replace=True)
async def saga_ctl_fails_once(ctx: NodeContext) -> str:
    if ctx.execution_id not in FAILED_ONCE:
        FAILED_ONCE.add(ctx.execution_id)
        raise RuntimeError("first run fails")
    await asyncio.sleep(3)  # the retried run takes a while: the other retries meet it
    return "ok"


RETRIED = {
    "name": "saga-retried-at-once",
    "dag": {
        "nodes": [
            {
                "id": "b",
                "handler": "python",
                "retry": {"max_attempts": 1},
                "config": {"function": "saga_ctl_fails_once"},
            }
        ]
    },
}


@pytest.mark.parametrize("mode", ["sqlite", "scaleout"])
async def test_of_retries_sent_at_once_one_runs_and_the_others_are_refused(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with http_api(mode, request, tmp_path) as (client, engine):
        execution_id = (await engine.start_execution(await engine.submit(RETRIED))).id
        base = f"/v1/workflows/{execution_id}"

        async def failed() -> bool:
            return (await client.get(base)).json()["status"] == "FAILED"

        await until(failed, 20, "the first run failed")
        answers = await asyncio.gather(*(client.post(f"{base}/retry") for _ in range(4)))
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [202, 409, 409, 409], [a.text for a in answers]
        refused = next(a for a in answers if a.status_code == 409).json()
        assert "a retry of it is already under way" in refused["detail"]
        events = await engine.store.list_events(execution_id, types=[RecordType.EXECUTION_RETRIED])
        assert len(events) == 1  # one retry, as the single 202 says
