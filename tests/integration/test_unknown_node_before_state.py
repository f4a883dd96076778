"""A node id the execution's definition does not have is named as such whatever state the
execution is in: approve and reject answer 404 (exit 5), a retry's ``from_node`` and a
trigger's override 422 (exit 2, ``unknown_node``), never the 409 of a state conflict, which
would send the user to fix the wrong thing. Over the API (embedded and scale-out), the
Python API, the command line on a store and through ``--server``; nothing is changed by the
refusal."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from test_api import serving
from test_api_scaleout import http_server
from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.cli.exits import EXIT_INVALID, EXIT_NOT_FOUND
from orchestrion.client import AsyncClient, InvalidRequest, NotFound
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError, ExecutionNotFound
from orchestrion.settings import load_settings
from scaleout import scaleout_api

GATED = {
    "name": "gated",
    "dag": {
        "nodes": [
            {"id": "gate", "handler": "approval"},
            {"id": "after", "handler": "noop", "dependencies": ["gate"]},
        ]
    },
}
QUICK = {"name": "quick", "dag": {"nodes": [{"id": "only", "handler": "noop"}]}}


async def _waiting(engine: Engine) -> str:
    """An execution whose gate waits for a decision: not final, so no retry applies."""
    record = await engine.start_execution(GATED, {})
    deadline = time.monotonic() + 15
    while (await engine.node_states(record.id)).get("gate") is not NodeState.WAITING:
        assert time.monotonic() < deadline, "the gate never waited"
        await asyncio.sleep(0.05)
    return record.id


async def _completed(engine: Engine) -> str:
    """A completed execution: final, so no decision applies."""
    record = await engine.start_execution(QUICK, {})
    result = await engine.wait(record.id, timeout=15)
    assert result.status is ExecutionStatus.COMPLETED
    return record.id


async def _refusals(engine: Engine) -> None:
    """The Python API's answers, in whatever mode ``engine`` runs."""
    completed, waiting = await _completed(engine), await _waiting(engine)
    pending, _ = await engine.create_execution((await engine.submit(QUICK)).id)
    for execution_id in (completed, pending.id):
        for approved in (True, False):
            with pytest.raises(
                ExecutionNotFound, match=r"has no node 'nosuch' \(its nodes: only\)"
            ):
                await engine.decide(execution_id, "nosuch", approved=approved)
    with pytest.raises(DefinitionError) as refused:
        await engine.retry(waiting, from_node="nosuch")
    [issue] = refused.value.issues
    assert (issue.code, issue.node, issue.field) == ("unknown_node", "nosuch", "from_node")
    # What the request said is wrong, not the definition; the nodes there are are named.
    assert issue.message.endswith("has no node 'nosuch' (its nodes: gate, after)")
    assert str(refused.value).startswith("from_node: invalid request: ")
    assert "definition" not in str(refused.value)
    # A trigger's override naming no node of an execution already started: the node first.
    for execution_id in (completed, waiting):
        with pytest.raises(DefinitionError) as refused:
            await engine.trigger(execution_id, {}, {"nosuch": {}})
        [issue] = refused.value.issues
        assert (issue.code, issue.node, issue.field) == ("unknown_node", "nosuch", "overrides")
        assert "no node 'nosuch' (its nodes: " in issue.message
        assert "definition" not in str(refused.value)
    assert (await engine.node_states(waiting))["gate"] is NodeState.WAITING  # untouched
    assert (await engine.store.get_execution(completed)).status is ExecutionStatus.COMPLETED


async def test_the_python_api_names_the_unknown_node_first(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'nodes.db'}") as engine:
        await _refusals(engine)


async def test_scale_out_names_the_unknown_node_first(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    async with scaleout_api(postgres_url, redis_server, redis_prefix) as api:
        await _refusals(api)


async def test_the_api_names_the_unknown_node_first(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        completed, waiting = await _completed(api.engine), await _waiting(api.engine)
        pending = (await client.post("/v1/workflow", json=QUICK)).json()["execution_id"]
        for execution_id in (completed, pending):
            for verb in ("approve", "reject"):
                answer = await client.post(f"/v1/workflows/{execution_id}/nodes/nosuch/{verb}")
                assert answer.status_code == 404, answer.text
                assert "has no node 'nosuch' (its nodes: only)" in answer.json()["detail"]
        answer = await client.post(f"/v1/workflows/{waiting}/retry", params={"from_node": "nosuch"})
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert problem["type"] == "urn:orchestrion:problem:invalid-input"
        # The field, the node that is not there and the nodes that are; no definition blamed.
        assert problem["detail"] == (
            f"from_node: invalid request: node 'nosuch', field 'from_node': execution {waiting}"
            " has no node 'nosuch' (its nodes: gate, after)"
        )
        assert [(e["code"], e["node"], e["field"]) for e in problem["errors"]] == [
            ("unknown_node", "nosuch", "from_node")
        ]
        for execution_id in (completed, waiting):
            trigger = f"/v1/workflow/trigger/{execution_id}"
            answer = await client.post(trigger, json={"node_overrides": {"nosuch": {}}})
            assert answer.status_code == 422, answer.text
            assert answer.json()["errors"][0]["node"] == "nosuch"
        shown = (await client.get(f"/v1/workflows/{waiting}")).json()
        assert shown["nodes"]["gate"]["state"] == "WAITING"
        # A known node in the wrong state is still the conflict it is.
        answer = await client.post(f"/v1/workflows/{completed}/nodes/only/approve")
        assert answer.status_code == 409, answer.text
        answer = await client.post(f"/v1/workflows/{waiting}/retry", params={"from_node": "gate"})
        assert answer.status_code == 409, answer.text


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_the_command_line_names_the_unknown_node_first(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"

    async def prepare() -> tuple[str, str]:
        async with Engine(f"sqlite:///{db}") as engine:
            return await _completed(engine), await _waiting(engine)

    completed, waiting = asyncio.run(prepare())
    for verb in ("approve", "reject"):
        ran = _cli(verb, completed, "nosuch", "--db", str(db))
        assert ran.exit_code == EXIT_NOT_FOUND, ran.output
        assert "has no node 'nosuch'" in ran.output
    ran = _cli("retry", waiting, "--from-node", "nosuch", "--db", str(db))
    assert ran.exit_code == EXIT_INVALID, ran.output
    assert "has no node 'nosuch'" in ran.output and "cannot retry" not in ran.output
    assert "invalid request from_node" in ran.output and "definition" not in ran.output
    assert "(its nodes: gate, after)" in ran.output

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'server.db'}")
    with http_server(settings) as url:

        async def through_client() -> tuple[str, str]:
            async with AsyncClient(url) as client:
                done = (await client.run(QUICK, timeout=15)).execution_id
                gated = (await client.submit(GATED)).execution_id
                await client.trigger(gated)
                deadline = time.monotonic() + 15
                while (await client.status(gated)).nodes["gate"].state is not NodeState.WAITING:
                    assert time.monotonic() < deadline
                    await asyncio.sleep(0.05)
                with pytest.raises(NotFound, match="has no node 'nosuch'"):
                    await client.approve(done, "nosuch")
                with pytest.raises(InvalidRequest) as refused:
                    await client.retry(gated, from_node="nosuch")
                assert refused.value.errors[0]["field"] == "from_node"
                return done, gated

        done, gated = asyncio.run(through_client())
        for verb in ("approve", "reject"):
            ran = _cli(verb, done, "nosuch", "--server", url)
            assert ran.exit_code == EXIT_NOT_FOUND, ran.output
        ran = _cli("retry", gated, "--from-node", "nosuch", "--server", url)
        assert ran.exit_code == EXIT_INVALID, ran.output
        assert "nosuch" in ran.output and "cannot retry" not in ran.output
        assert "definition" not in ran.output and "(its nodes: gate, after)" in ran.output
