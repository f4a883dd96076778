"""A node id the execution's definition does not have: 422 (code ``unknown_node``, naming
it) when the request's body or query holds it, as any invalid request content; 404 when the
path names it, as an unknown execution; never 409, which is a conflict with the state."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from test_api import serving

PROBLEM = "application/problem+json"
FLOW = {
    "name": "nodes",
    "dag": {
        "nodes": [
            {"id": "gate", "handler": "approval"},
            {"id": "pick", "handler": "noop", "dependencies": ["gate"], "config": {"value": 1}},
        ]
    },
}


def assert_unknown(answer: httpx.Response, field: str) -> None:
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith(PROBLEM)
    problem = answer.json()
    assert problem["type"] == "urn:orchestrion:problem:invalid-input"
    assert [(e["code"], e["node"], e["field"]) for e in problem["errors"]] == [
        ("unknown_node", "nosuch", field)
    ]
    assert "nosuch" in problem["detail"]


async def status_of(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (await client.get(f"/v1/workflows/{execution_id}")).json()
    return body


async def test_unknown_node_ids_in_requests(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        submitted = await client.post("/v1/workflow", json=FLOW)
        execution_id = submitted.json()["execution_id"]
        trigger = f"/v1/workflow/trigger/{execution_id}"
        for body in ({"node_overrides": {"nosuch": {"x": 1}}}, {"nosuch": {"x": 1}}):
            assert_unknown(await client.post(trigger, json=body), "overrides")
        start = "/v1/definitions/nodes/executions"
        assert_unknown(
            await client.post(start, json={"node_overrides": {"nosuch": {"x": 1}}}), "overrides"
        )
        assert (await status_of(client, execution_id))["status"] == "PENDING"  # nothing started

        assert (await client.post(trigger, json={})).status_code == 202
        for verb in ("approve", "reject"):  # the path names it: not found
            answer = await client.post(f"/v1/workflows/{execution_id}/nodes/nosuch/{verb}")
            assert answer.status_code == 404, answer.text
        deadline = time.monotonic() + 10
        while (await status_of(client, execution_id))["nodes"]["gate"]["state"] != "WAITING":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        rejected = await client.post(f"/v1/workflows/{execution_id}/nodes/gate/reject")
        assert rejected.status_code == 202, rejected.text
        while (await status_of(client, execution_id))["status"] != "FAILED":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        retry = f"/v1/workflows/{execution_id}/retry"
        assert_unknown(await client.post(retry, params={"from_node": "nosuch"}), "from_node")
        assert (await status_of(client, execution_id))["status"] == "FAILED"  # not re-run


async def test_the_cli_refuses_an_unknown_from_node_as_invalid(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from orchestrion.cli.app import app as cli
    from orchestrion.cli.exits import EXIT_INVALID
    from orchestrion.engine.facade import Engine

    db = tmp_path / "cli.db"
    failing = {
        "name": "failing",
        "dag": {"nodes": [{"id": "boom", "handler": "python", "config": {"function": "fail"}}]},
    }
    async with Engine(f"sqlite:///{db}") as engine:
        result = await engine.run(failing, timeout=10)
    ran = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["retry", result.execution_id, "--from-node", "nosuch", "--db", str(db)],
    )
    assert ran.exit_code == EXIT_INVALID, ran.output
    assert "nosuch" in ran.output
