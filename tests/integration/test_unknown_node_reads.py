"""A read of a node the execution's definition does not have is refused as such (404, exit 3)
instead of answering with nothing, which reads as "no lines yet" and sends the user to wait:
a node's log lines (page, stream, and the ``node`` filter of the execution's), its rendered
inputs; on the API, the command line on a store and through ``--server``. A known node with
nothing to show still answers with nothing."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_api import assert_problem, serving
from test_api_scaleout import http_server
from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.cli.exits import EXIT_NOT_FOUND
from orchestrion.client import Client
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

QUICK = {"name": "quick", "dag": {"nodes": [{"id": "only", "handler": "noop"}]}}


async def test_the_api_refuses_reads_of_an_unknown_node(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        client = api.client
        done = await api.engine.run(QUICK)
        base = f"/v1/workflows/{done.execution_id}"
        for url in (
            f"{base}/nodes/nosuch/logs",
            f"{base}/logs?node=nosuch",
            f"{base}/nodes/nosuch/inputs",
            f"{base}/nodes/nosuch/logs/stream",
            f"{base}/logs/stream?node=nosuch",
        ):
            problem = assert_problem(await client.get(url), 404)
            assert "has no node 'nosuch' (its nodes: only)" in problem["detail"], url
        # The node is there and wrote nothing: an empty answer, as before.
        assert (await client.get(f"{base}/nodes/only/logs")).json()["items"] == []
        assert (await client.get(f"{base}/logs?node=only")).json()["items"] == []
        inputs = (await client.get(f"{base}/nodes/only/inputs")).json()
        assert [item["attempt"] for item in inputs["items"]] == [1]
        async with client.stream("GET", f"{base}/nodes/only/logs/stream") as response:
            assert response.status_code == 200


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def test_the_command_line_refuses_logs_of_an_unknown_node(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"

    async def prepare() -> str:
        async with Engine(f"sqlite:///{db}") as engine:
            return (await engine.run(QUICK)).execution_id

    execution_id = asyncio.run(prepare())
    ran = _cli("logs", execution_id, "nosuch", "--db", str(db))
    assert ran.exit_code == EXIT_NOT_FOUND, ran.output
    assert "has no node 'nosuch' (its nodes: only)" in ran.output
    assert _cli("logs", execution_id, "only", "--db", str(db)).exit_code == 0

    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'server.db'}")
    with http_server(settings) as url:
        with Client(url) as client:
            remote_id = client.run(QUICK, timeout=15).execution_id
        ran = _cli("logs", remote_id, "nosuch", "--server", url)
        assert ran.exit_code == EXIT_NOT_FOUND, ran.output
        assert "nosuch" in ran.output
        assert _cli("logs", remote_id, "only", "--server", url).exit_code == 0
