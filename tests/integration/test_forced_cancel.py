"""A cancel that comes while an execution compensates is recorded and lets the compensation
run to its end; a forced one (``force=True``, ``DELETE ...?force=true``, ``cancel --force``)
abandons it: the execution ends cancelled at once, its error saying the compensation was
abandoned, and a compensation that would have hung for ever holds nothing up. Through the
Python API, the API and the command line."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from test_api import serving
from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.core.control import ABANDONED
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from saga_flows import slow_undo_saga

# a completes; b fails; a's compensation then sleeps far longer than any test waits.
SAGA = slow_undo_saga("stuck-saga", 600)


async def _compensating(engine: Engine) -> str:
    record = await engine.start_execution(SAGA, {})
    deadline = time.monotonic() + 15
    while True:
        events = await engine.store.list_events(record.id, types=["execution.compensating"])
        if events:
            return record.id
        assert time.monotonic() < deadline, "it never compensated"
        await asyncio.sleep(0.05)


async def _status(engine: Engine, execution_id: str) -> ExecutionStatus:
    return (await engine.store.get_execution(execution_id)).status


async def _ends_cancelled(engine: Engine, execution_id: str) -> dict[str, Any]:
    result = await engine.wait(execution_id, timeout=10)
    assert result.status is ExecutionStatus.CANCELLED
    error = (await engine.store.get_execution(execution_id)).error
    assert error is not None and ABANDONED in error["message"], error
    return error


async def test_the_python_api_abandons_a_compensation_only_when_forced(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'saga.db'}") as engine:
        execution_id = await _compensating(engine)
        await engine.cancel(execution_id, "stop")
        assert await _status(engine, execution_id) is ExecutionStatus.RUNNING  # recorded only
        await engine.cancel(execution_id, "stop now", force=True)
        error = await _ends_cancelled(engine, execution_id)
        assert error["message"].startswith("stop now; ")
        # The compensation under way (a 600 s sleep) is stopped, not left running.
        deadline = time.monotonic() + 5
        while engine._dispatcher is not None and engine._dispatcher.in_flight():
            assert time.monotonic() < deadline, "the abandoned compensation still runs"
            await asyncio.sleep(0.05)


async def test_the_api_abandons_a_compensation_with_force(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        execution_id = await _compensating(api.engine)
        answer = await api.client.delete(f"/v1/workflows/{execution_id}")
        assert answer.status_code == 202, answer.text
        assert answer.json()["message"].startswith("Cancel recorded, not carried out")
        assert "force=true" in answer.json()["message"]
        answer = await api.client.delete(f"/v1/workflows/{execution_id}?force=true")
        assert answer.status_code == 202, answer.text
        assert answer.json()["status"] == "CANCELLED", answer.json()
        await _ends_cancelled(api.engine, execution_id)
        wrong = await api.client.delete(f"/v1/workflows/{execution_id}?force=maybe")
        assert wrong.status_code == 422, wrong.text


def test_the_command_line_abandons_a_compensation_with_force(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"

    async def start() -> str:
        # An engine of its own drives the saga; the commands below are other processes'
        # requests to it, carried out by it.
        async with Engine(f"sqlite:///{db}") as engine:
            execution_id = await _compensating(engine)

            def command(*args: str) -> Any:
                return CliRunner().invoke(cli, [*args, execution_id, "--db", str(db)])

            ran = await asyncio.to_thread(command, "cancel")
            assert ran.exit_code == 0, ran.output
            assert "recorded, not carried out" in ran.output and "--force" in ran.output
            ran = await asyncio.to_thread(command, "cancel", "--force")
            assert ran.exit_code == 0, ran.output
            assert f"cancelled {execution_id}" in ran.output
            await _ends_cancelled(engine, execution_id)
            return execution_id

    asyncio.run(start())
