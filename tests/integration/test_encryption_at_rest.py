"""Encryption at rest, end to end on a real SQLite file: the raw bytes of the database and its
WAL never hold a classified value, yet the engine, the API and the CLI show the plaintext, a
restart resumes with it, and an envelope moved to another row does not decrypt."""

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
from orchestrion.errors import PermanentNodeError
from orchestrion.governance.encryption import DecryptionError, KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings

# Distinctive values that appear nowhere but in what the handlers compute and the inputs.
SECRET_IN = "Ada-Lovelace-IN-4242"
CARD = "4111-2222-OUT-9931"


@function("t_card_for", replace=True)
def t_card_for(ctx: NodeContext, name: str) -> dict[str, Any]:
    return {"holder": name.upper(), "card": "4111-2222-" + "OUT-9931"}


@function("t_leaky_failure", replace=True)
def t_leaky_failure(ctx: NodeContext, name: str) -> None:
    raise PermanentNodeError(f"no account for {name.upper()}")


def key_line(*ids: str) -> str:
    return ",".join(f"{i}:{KeyRing.generate_key()}" for i in ids)


AUDIT_KEYS = key_line("a1")


def governance(keys: str | None) -> Governance:
    """With the audit trail on too: its records must not carry classified values either."""
    environ = {"ORCHESTRION_AUDIT_KEYS": AUDIT_KEYS}
    if keys:
        environ["ORCHESTRION_ENCRYPTION_KEYS"] = keys
    return Governance.load(environ=environ)


def workflow(name: str = "kyc", *, approval: bool = False) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {"id": "input", "handler": "input", "data_classification": "pii"},
        {
            "id": "card",
            "handler": "python",
            "dependencies": ["input"],
            "data_classification": "pii",
            "config": {"function": "t_card_for", "params": {"name": "{{ input.name }}"}},
        },
    ]
    last = "card"
    if approval:
        nodes.append(
            {
                "id": "review",
                "handler": "approval",
                "dependencies": ["card"],
                "data_classification": "pii",
                "config": {"message": "check {{ card.output.holder }}"},
            }
        )
        last = "review"
    nodes += [
        {
            # It reads a pii output, so it would inherit pii; declared public, API callers
            # see it unmasked, but at rest it is sealed like every node of the execution.
            "id": "count",
            "handler": "noop",
            "data_classification": "public",
            "dependencies": [last],
            "config": {"value": {"n": 1}},
        },
        {
            "id": "done",
            "handler": "output",
            "dependencies": ["card", "count"],
            "data_classification": "pii",
        },
    ]
    return {"name": name, "dag": {"nodes": nodes}}


def raw_bytes(db: Path) -> bytes:
    data = b""
    for path in (db, db.with_name(db.name + "-wal")):
        if path.exists():
            data += path.read_bytes()
    return data


def assert_hidden(raw: bytes) -> None:
    for secret in (SECRET_IN, SECRET_IN.upper(), CARD):
        assert secret.encode() not in raw, f"{secret} found in the raw store"


@pytest.fixture
def keys() -> str:
    return key_line("k1")


@pytest.fixture
async def engine(tmp_path: Path, keys: str) -> AsyncIterator[Engine]:
    async with Engine(
        f"sqlite:///{tmp_path / 'o.db'}", governance=governance(keys), concurrency=4
    ) as running:
        yield running


async def test_classified_values_never_reach_the_file_but_read_back_plain(
    engine: Engine, tmp_path: Path
) -> None:
    result = await engine.run(workflow(), {"name": SECRET_IN}, timeout=20)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.nodes["card"].output == {"holder": SECRET_IN.upper(), "card": CARD}
    assert result.result["card"]["card"] == CARD
    assert result.nodes["count"].output == {"n": 1}
    # The WAL is still there while the engine runs: both files are searched.
    db = tmp_path / "o.db"
    assert (tmp_path / "o.db-wal").exists()
    assert_hidden(raw_bytes(db))
    # Every output of a classified execution is an envelope with a key id, public ones too.
    conn = sqlite3.connect(db)
    rows = dict(conn.execute("SELECT node_id, output FROM node_runs").fetchall())
    inputs, stored_result = conn.execute("SELECT inputs, result FROM executions").fetchone()
    conn.close()
    for value in (rows["card"], rows["input"], rows["count"], rows["done"], inputs, stored_result):
        envelope = json.loads(value)
        assert envelope["$enc"] == "aes-256-gcm" and envelope["kid"] == "k1"
    checked = await engine.audit.verify()  # the trail of the same run is in the same file
    assert checked.ok and checked.verified_up_to > 0
    await engine.stop()
    assert_hidden(raw_bytes(db))


async def test_starts_created_in_one_batch_are_sealed_each(engine: Engine, tmp_path: Path) -> None:
    """Concurrent starts share one transaction (one batch through the encrypting store):
    every execution's inputs are sealed under its own id, and each reads back plain."""
    stored = await engine.submit(workflow())
    names = [f"{SECRET_IN} {i}" for i in range(5)]
    records = await asyncio.gather(
        *(engine.start_execution(stored, {"name": name}) for name in names)
    )
    results = await asyncio.gather(*(engine.wait(r.id, timeout=20) for r in records))
    for name, result in zip(names, results, strict=True):
        assert result.status is ExecutionStatus.COMPLETED
        assert result.nodes["card"].output["holder"] == name.upper()
    conn = sqlite3.connect(tmp_path / "o.db")
    sealed = [json.loads(row[0]) for row in conn.execute("SELECT inputs FROM executions")]
    conn.close()
    assert len(sealed) == 5 and all(envelope["$enc"] == "aes-256-gcm" for envelope in sealed)
    assert_hidden(raw_bytes(tmp_path / "o.db"))


async def test_errors_of_classified_nodes_keep_their_message_secret(engine: Engine) -> None:
    # The definition is not data (it is stored as written): the value comes in as an input.
    lookup = {"function": "t_leaky_failure", "params": {"name": "{{ input.name }}"}}
    node = {"id": "lookup", "handler": "python", "data_classification": "phi", "config": lookup}
    definition = {"name": "leaky", "dag": {"nodes": [node]}}
    result = await engine.run(definition, {"name": SECRET_IN}, timeout=20)
    assert result.status is ExecutionStatus.FAILED
    assert result.nodes["lookup"].error is not None
    assert result.nodes["lookup"].error["message"] == f"no account for {SECRET_IN.upper()}"
    assert result.nodes["lookup"].error["category"] == "permanent"
    assert SECRET_IN.upper() in (result.error or {})["message"]
    events = await engine.store.list_events(result.execution_id)
    failed = [e for e in events if e.type == "node.failed"]
    assert failed[0].data is not None
    assert failed[0].data["error"]["message"] == f"no account for {SECRET_IN.upper()}"
    assert_hidden(raw_bytes(Path(engine.database_url.removeprefix("sqlite:///"))))


async def test_api_and_cli_show_the_plaintext(tmp_path: Path, keys: str) -> None:
    db = tmp_path / "api.db"
    settings = load_settings(
        database_url=f"sqlite:///{db}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        api_keys="adm:admin",
    )
    engine = Engine(settings=settings, governance=governance(keys))
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            headers = {"Authorization": "Bearer adm"}
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=headers
            ) as client:
                created = await client.post("/v1/workflow", json=workflow())
                assert created.status_code == 201, created.text
                execution_id = created.json()["execution_id"]
                trigger = {"input_params": {"name": SECRET_IN}}
                started = await client.post(f"/v1/workflow/trigger/{execution_id}", json=trigger)
                assert started.status_code == 202, started.text
                for _ in range(400):
                    body = (await client.get(f"/v1/workflows/{execution_id}")).json()
                    if body["status"] == "COMPLETED":
                        break
                    await asyncio.sleep(0.025)
                assert body["status"] == "COMPLETED", body
                assert CARD in json.dumps(body)
                results = (await client.get(f"/v1/workflows/{execution_id}/results")).json()
                assert results["result"]["card"]["card"] == CARD
                events = await client.get(f"/v1/workflows/{execution_id}/events")
                assert events.status_code == 200
        assert_hidden(raw_bytes(db))
    finally:
        await engine.stop(0)
    shown = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["status", execution_id, "--db", str(db), "--json"],
        env={"ORCHESTRION_ENCRYPTION_KEYS": keys, "ORCHESTRION_SERVER_URL": ""},
    )
    assert shown.exit_code == 0, shown.output
    assert CARD in shown.output and SECRET_IN.upper() in shown.output
    # Without the key the CLI says which key it needs instead of printing envelopes.
    blind = await asyncio.to_thread(
        CliRunner().invoke,
        cli,
        ["status", execution_id, "--db", str(db), "--json"],
        env={"ORCHESTRION_ENCRYPTION_KEYS": "", "ORCHESTRION_SERVER_URL": ""},
    )
    assert blind.exit_code != 0
    assert "'k1'" in blind.output
    assert CARD not in blind.output


async def test_a_restart_resumes_a_half_finished_classified_workflow(
    tmp_path: Path, keys: str
) -> None:
    url = f"sqlite:///{tmp_path / 'resume.db'}"
    async with Engine(url, governance=governance(keys)) as first:
        record = await first.start_execution(workflow(approval=True), {"name": SECRET_IN})
        waiting = await first.settle(record.id, timeout=20)
        assert waiting.nodes["review"].state is NodeState.WAITING
    assert_hidden(raw_bytes(tmp_path / "resume.db"))
    async with Engine(url, governance=governance(keys)) as second:
        await second.decide(record.id, "review", approved=True, by="ops")
        result = await second.wait(record.id, timeout=20)
    assert result.status is ExecutionStatus.COMPLETED
    assert result.nodes["card"].output["card"] == CARD
    assert result.nodes["review"].output["approved"] is True
    assert result.result["card"]["holder"] == SECRET_IN.upper()
    assert_hidden(raw_bytes(tmp_path / "resume.db"))


async def test_a_classified_workflow_node_starts_a_classified_child(
    engine: Engine, tmp_path: Path
) -> None:
    child = {
        "name": "child",
        "dag": {
            "nodes": [{"id": "greet", "handler": "noop", "config": {"value": "{{ input.who }}"}}]
        },
    }
    await engine.submit(child)
    parent = {
        "name": "parent",
        "dag": {
            "nodes": [
                {
                    "id": "kid",
                    "handler": "workflow",
                    "data_classification": "pii",
                    "config": {"workflow": "child", "inputs": {"who": "{{ input.name }}"}},
                }
            ]
        },
    }
    result = await engine.run(parent, {"name": SECRET_IN}, timeout=20)
    assert result.status is ExecutionStatus.COMPLETED
    runs, _ = await engine.list_executions()
    (kid,) = [r for r in runs if r.parent_execution_id == result.execution_id]
    assert kid.inputs == {"who": SECRET_IN}
    assert (await engine.result(kid.id)).nodes["greet"].output == SECRET_IN
    assert_hidden(raw_bytes(tmp_path / "o.db"))


def test_processes_refuse_to_start_when_encryption_is_required_without_a_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrion.cluster.worker import Worker
    from orchestrion.errors import ConfigurationError
    from orchestrion.handlers.registry import default_registry

    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\nencryption:\n  required: true\n")
    monkeypatch.delenv("ORCHESTRION_ENCRYPTION_KEYS", raising=False)
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'r.db'}", governance_file=policy)
    with pytest.raises(ConfigurationError, match="ORCHESTRION_ENCRYPTION_KEYS is not set"):
        Engine(settings=settings)
    with pytest.raises(ConfigurationError, match="requires encryption"):
        Worker("redis://127.0.0.1:6379/0", settings, default_registry())
    monkeypatch.setenv("ORCHESTRION_ENCRYPTION_KEYS", key_line("k1"))
    assert Engine(settings=settings).governance.keyring is not None


async def test_an_envelope_copied_to_another_row_does_not_decrypt(engine: Engine) -> None:
    one = await engine.run(workflow("one"), {"name": SECRET_IN}, timeout=20)
    two = await engine.run(workflow("two"), {"name": "someone else"}, timeout=20)
    db = engine.database_url.removeprefix("sqlite:///")
    conn = sqlite3.connect(db)
    (stolen,) = conn.execute(
        "SELECT output FROM node_runs WHERE execution_id = ? AND node_id = 'card'",
        (one.execution_id,),
    ).fetchone()
    with conn:
        conn.execute(
            "UPDATE node_runs SET output = ? WHERE execution_id = ? AND node_id = 'card'",
            (stolen, two.execution_id),
        )
        # Same execution, another node: refused too.
        conn.execute(
            "UPDATE node_runs SET output = ? WHERE execution_id = ? AND node_id = 'done'",
            (stolen, one.execution_id),
        )
    conn.close()
    with pytest.raises(DecryptionError, match="tampered, or stored for another row"):
        await engine.result(two.execution_id)
    with pytest.raises(DecryptionError, match="another row"):
        await engine.store.get_outputs(one.execution_id, ["done"])
    assert (await engine.store.get_outputs(one.execution_id, ["card"]))["card"]["card"] == CARD


async def test_a_key_that_is_not_in_the_ring_is_named(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'k.db'}"
    async with Engine(url, governance=governance(key_line("old"))) as engine:
        done = await engine.run(workflow(), {"name": SECRET_IN}, timeout=20)
    async with Engine(url, governance=governance(key_line("new")), resume=False) as engine:
        with pytest.raises(DecryptionError, match="'old'"):
            await engine.result(done.execution_id)


async def test_without_a_key_values_are_stored_plain_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A local engine says it at INFO (only processes that serve others warn).
    caplog.set_level(logging.INFO, logger="orchestrion.governance.runtime")
    async with Engine(f"sqlite:///{tmp_path / 'p.db'}", governance=governance(None)) as engine:
        result = await engine.run(workflow(), {"name": SECRET_IN}, timeout=20)
    assert result.nodes["card"].output["card"] == CARD
    warned = [r for r in caplog.records if "ORCHESTRION_ENCRYPTION_KEYS" in r.getMessage()]
    assert len(warned) == 1
    assert CARD.encode() in raw_bytes(tmp_path / "p.db")


async def test_unclassified_workflows_are_written_untouched(engine: Engine, tmp_path: Path) -> None:
    plain = {
        "name": "plain",
        "dag": {"nodes": [{"id": "a", "handler": "noop", "config": {"value": "{{ input.x }}"}}]},
    }
    result = await engine.run(plain, {"x": SECRET_IN}, timeout=20)
    assert result.nodes["a"].output == SECRET_IN
    conn = sqlite3.connect(tmp_path / "o.db")
    (output,) = conn.execute("SELECT output FROM node_runs").fetchone()
    conn.close()
    assert json.loads(output) == SECRET_IN


async def test_a_server_without_the_key_says_which_key_it_lacks(tmp_path: Path) -> None:
    db = tmp_path / "nokey.db"
    async with Engine(f"sqlite:///{db}", governance=governance(key_line("k1"))) as engine:
        done = await engine.run(workflow(), {"name": SECRET_IN}, timeout=20)
    settings = load_settings(
        database_url=f"sqlite:///{db}", rate_limit_per_second=0, shutdown_grace=0
    )
    other = Engine(settings=settings, governance=governance(key_line("k2")), resume=False)
    await other.start()
    app = create_app(other, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                response = await client.get(f"/v1/workflows/{done.execution_id}")
    finally:
        await other.stop(0)
    assert response.status_code == 500, response.text
    body = response.json()
    assert "cannot be decrypted" in body["detail"] and "'k1'" in body["detail"]
    assert SECRET_IN not in response.text and CARD not in response.text
