"""Encrypted means every copy: in a classified execution, the values of its inputs leave no
readable trace in the raw SQLite file and WAL (inputs, overrides, the ``input`` node's
output, templated and python nodes, a retried node's error, an approval's message and
decision, a map, a child workflow, a failure's message and traceback, results and journal),
while the engine, the API and the CLI read the plaintext back."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from orchestrion.api import create_app
from orchestrion.cli.app import app as cli
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.settings import load_settings
from sealed_values import (
    Secrets,
    assert_reads_back_plain,
    child_workflow,
    classified_workflow,
    run_everything,
    sqlite_bytes,
)


def key_line() -> str:
    return f"k1:{KeyRing.generate_key()}"


@pytest.fixture
def keys() -> str:
    return key_line()


@pytest.fixture
def secrets() -> Secrets:
    return Secrets()


def governance(keys: str) -> Governance:
    return Governance.load(
        environ={
            "ORCHESTRION_ENCRYPTION_KEYS": keys,
            "ORCHESTRION_AUDIT_KEYS": f"a1:{KeyRing.generate_key()}",
        }
    )


@pytest.fixture
async def engine(tmp_path: Path, keys: str) -> AsyncIterator[Engine]:
    async with Engine(
        f"sqlite:///{tmp_path / 'o.db'}", governance=governance(keys), concurrency=8
    ) as running:
        yield running


def assert_nowhere(secrets: Secrets, raw: str | bytes, where: str) -> None:
    found = secrets.found_in(raw)
    assert not found, f"{found} readable in {where}"


async def test_no_copy_of_a_classified_value_is_readable_in_the_sqlite_file(
    engine: Engine, tmp_path: Path, secrets: Secrets
) -> None:
    db = tmp_path / "o.db"
    result, failed_id = await run_everything(engine, secrets)
    assert (tmp_path / "o.db-wal").exists()  # while the engine runs, most of it is there
    assert_nowhere(secrets, sqlite_bytes(db), "the SQLite file and its WAL")
    await assert_reads_back_plain(engine, secrets, result, failed_id)
    # Every output and every error text of both executions is an envelope.
    conn = sqlite3.connect(db)
    outputs = conn.execute("SELECT node_id, output, error FROM node_runs").fetchall()
    conn.close()
    for node_id, output, error in outputs:
        if output is not None:
            assert json.loads(output)["$enc"] == "aes-256-gcm", node_id
        if error is not None:
            assert json.loads(error)["message"]["$enc"] == "aes-256-gcm", node_id
    await engine.stop()  # the last checkpoint moves the WAL into the file
    assert_nowhere(secrets, sqlite_bytes(db), "the SQLite file after the checkpoint")


async def test_the_api_shows_an_admin_the_plaintext_and_logs_none_of_it(
    tmp_path: Path, keys: str, secrets: Secrets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="orchestrion.api.transitions")
    db = tmp_path / "api.db"
    settings = load_settings(
        database_url=f"sqlite:///{db}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        api_keys="adm:admin,view:viewer",
    )
    engine = Engine(settings=settings, governance=governance(keys))
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            result, failed_id = await run_everything(engine, secrets)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                admin = {"Authorization": "Bearer adm"}
                body = await client.get(f"/v1/workflows/{result.execution_id}", headers=admin)
                assert body.status_code == 200, body.text
                for value in (secrets.marker, secrets.email, secrets.card, secrets.comment):
                    assert value in body.text
                events = await client.get(
                    f"/v1/workflows/{result.execution_id}/events", headers=admin
                )
                assert secrets.marker in events.text
                failed = await client.get(f"/v1/workflows/{failed_id}", headers=admin)
                assert secrets.email in failed.text
                # A viewer gets what masking leaves, never an envelope: every output of a
                # classified execution is pattern-masked, a node that echoes inputs included.
                viewer = {"Authorization": "Bearer view"}
                masked = await client.get(f"/v1/workflows/{result.execution_id}", headers=viewer)
                assert masked.status_code == 200
                assert "$enc" not in masked.text
                nodes = masked.json()["nodes"]
                assert nodes["score"]["output"] == {"masked": "pii"}
                assert nodes["shape"]["output"]["card"] == "[card]"
                assert nodes["shape"]["output"]["who"] == "[email]"
                for value in (secrets.email, secrets.card, secrets.iban):
                    assert value not in masked.text
            for _ in range(200):  # the transition log is written off the engine loop
                if any(getattr(r, "execution_id", None) == failed_id for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
        # The node transition log names a failure's category, never its sealed text.
        lines = [r for r in caplog.records if r.name == "orchestrion.api.transitions"]
        errors = [getattr(r, "error", None) for r in lines if getattr(r, "error", None)]
        assert "[sealed: error]" in errors  # the failed node's line, and the retried one's
        logged = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in lines)
        assert_nowhere(secrets, logged, "the transition log")
        assert_nowhere(secrets, sqlite_bytes(db), "the SQLite file behind the API")
    finally:
        await engine.stop(0)


async def test_a_restart_keeps_sealing_a_half_finished_execution(
    tmp_path: Path, keys: str, secrets: Secrets
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    async with Engine(url, governance=governance(keys)) as first:
        await first.submit(child_workflow())
        # Created pending, then triggered: inputs and overrides are written by the trigger.
        stored = await first.submit(classified_workflow())
        pending, _ = await first.create_execution(stored.id)
        record = await first.trigger(pending.id, secrets.inputs(), secrets.overrides())
        waiting = await first.settle(record.id, timeout=30)
        assert waiting.nodes["review"].state is NodeState.WAITING
    assert_nowhere(secrets, sqlite_bytes(tmp_path / "r.db"), "the file after a stop")
    async with Engine(url, governance=governance(keys)) as second:
        await second.decide(record.id, "review", approved=True, comment=secrets.comment)
        result = await second.wait(record.id, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED
        assert result.nodes["review"].output["comment"] == secrets.comment
        assert result.nodes["echo"].output.startswith(secrets.override)
    assert_nowhere(secrets, sqlite_bytes(tmp_path / "r.db"), "the file after a restart")


def test_the_cli_reads_the_plaintext_back(tmp_path: Path, keys: str, secrets: Secrets) -> None:
    db = tmp_path / "cli.db"

    async def run() -> str:
        async with Engine(f"sqlite:///{db}", governance=governance(keys)) as engine:
            result, _ = await run_everything(engine, secrets)
            return result.execution_id

    execution_id = asyncio.run(run())
    shown = CliRunner().invoke(
        cli,
        ["status", execution_id, "--db", str(db), "--json"],
        env={"ORCHESTRION_ENCRYPTION_KEYS": keys, "ORCHESTRION_SERVER_URL": ""},
    )
    assert shown.exit_code == 0, shown.output
    for value in (secrets.marker, secrets.card, secrets.iban, secrets.comment):
        assert value in shown.output
    assert_nowhere(secrets, sqlite_bytes(db), "the SQLite file")


# ---------------------------------------------------------------- a classified child


def plain_parent() -> dict[str, Any]:
    """Classifies nothing itself; its child does, and the child's result comes back."""
    return {
        "name": "plain-parent",
        "dag": {
            "nodes": [
                {
                    "id": "kid",
                    "handler": "workflow",
                    "config": {"workflow": "pii-child", "inputs": {"who": "{{ input.who }}"}},
                },
                {
                    "id": "after",
                    "handler": "noop",
                    "dependencies": ["kid"],
                    "config": {"value": "{{ kid.output }}"},
                },
            ]
        },
    }


def pii_child(fails: bool = False) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": "lookup",
        "handler": "python",
        "data_classification": "pii",
        "config": {"function": "sealed_shape" if not fails else "sealed_boom"},
    }
    if fails:
        node["config"]["params"] = {"email": "{{ input.who }}"}
    else:
        node["config"]["params"] = {
            "marker": "m",
            "email": "{{ input.who }}",
            "card": "c",
            "iban": "i",
        }
    return {"name": "pii-child", "dag": {"nodes": [node]}}


@pytest.mark.parametrize("fails", [False, True], ids=["result", "failure"])
async def test_a_parent_is_sealed_once_a_classified_child_answers_it(
    tmp_path: Path, keys: str, secrets: Secrets, fails: bool
) -> None:
    db = tmp_path / "p.db"
    async with Engine(f"sqlite:///{db}", governance=governance(keys)) as engine:
        await engine.submit(pii_child(fails))
        inputs = {"who": secrets.email}
        result = await engine.run(plain_parent(), inputs, timeout=30)
        if fails:
            assert result.status is ExecutionStatus.FAILED
            error = result.nodes["kid"].error or {}
            assert error["category"] == "child_failed" and secrets.email in error["message"]
        else:
            assert result.status is ExecutionStatus.COMPLETED, result.error
            assert result.nodes["kid"].output["result"]["lookup"]["who"] == secrets.email
            assert result.nodes["after"].output["result"]["lookup"]["who"] == secrets.email
    # The parent's own inputs were not classified when they were written: they are the
    # one copy stored as given (see docs/GOVERNANCE.md). Everything after the child is sealed.
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT node_id, output, error FROM node_runs WHERE execution_id = ?",
        (result.execution_id,),
    ).fetchall()
    events = [
        r[0]
        for r in conn.execute(
            "SELECT data FROM events WHERE execution_id = ?", (result.execution_id,)
        )
    ]
    (stored_error, stored_result) = conn.execute(
        "SELECT error, result FROM executions WHERE id = ?", (result.execution_id,)
    ).fetchone()
    conn.close()
    for node_id, output, error in rows:
        assert secrets.email not in (output or "") + (error or ""), node_id
    assert not any(secrets.email in (data or "") for data in events)
    assert secrets.email not in (stored_error or "") + (stored_result or "")
