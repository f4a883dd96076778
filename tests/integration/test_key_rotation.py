"""Key rotation on real SQLite and PostgreSQL stores: rotate from k1 to k2, remove k1, and every
execution still reads; a second run writes nothing; an interrupted run goes on when run again;
a value on a key that is no longer in the ring is reported by key id."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.store.base import LogFilter
from orchestrion.store.rotation import rotate

K1 = f"k1:{KeyRing.generate_key()}"
K2 = f"k2:{KeyRing.generate_key()}"


@pytest.fixture(autouse=True)
def _capture_node_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Embedded engines keep node log lines only when asked (a process-wide factory).
    monkeypatch.setenv("ORCHESTRION_CAPTURE_NODE_LOGS", "true")


@function("t_rot_secret", replace=True)
def t_rot_secret(ctx: NodeContext, name: str) -> dict[str, Any]:
    logging.getLogger("tests.rotation").warning("looking up %s", name)  # a sealed log line
    if name == "fail":
        raise ValueError(f"bad record for {name}")
    return {"secret": f"s3cr3t-{name}"}


def governance(keys: str) -> Governance:
    return Governance.load(environ={"ORCHESTRION_ENCRYPTION_KEYS": keys})


WORKFLOW = {
    "name": "rot",
    "dag": {
        "nodes": [
            {
                "id": "a",
                "handler": "python",
                "data_classification": "pii",
                "retry": {"max_attempts": 1},
                "config": {"function": "t_rot_secret", "params": {"name": "{{ input.name }}"}},
            },
            {"id": "out", "handler": "output", "dependencies": ["a"]},
        ]
    },
}


async def populate(url: str, keys: str) -> list[str]:
    """Completed and failed executions, sealed with ``keys``'s first key."""
    ids = []
    async with Engine(url, governance=governance(keys)) as engine:
        for name in ("ann", "bob", "cy", "fail"):
            result = await engine.run(WORKFLOW, {"name": name}, timeout=20)
            ids.append(result.execution_id)
    return ids


async def check_readable(url: str, keys: str, ids: list[str]) -> None:
    async with Engine(url, governance=governance(keys), resume=False) as engine:
        for eid, name in zip(ids, ("ann", "bob", "cy", "fail"), strict=True):
            lines = await engine.reads.node_logs(LogFilter(eid, node_id="a"))
            assert [line.message for line in lines] == [f"looking up {name}"]
            result = await engine.result(eid)
            if name == "fail":
                assert result.status is ExecutionStatus.FAILED
                assert result.nodes["a"].error is not None
                assert "bad record for fail" in result.nodes["a"].error["message"]
                events = await engine.store.list_events(eid, types=["node.failed"])
                assert events[0].data is not None
                assert "bad record" in events[0].data["error"]["message"]
            else:
                assert result.nodes["a"].output == {"secret": f"s3cr3t-{name}"}
                assert (await engine.store.get_execution(eid)).inputs == {"name": name}


def kids(db: Path) -> set[str]:
    conn = sqlite3.connect(db)
    text = "\n".join(
        str(row)
        for table in ("executions", "node_runs", "events", "node_logs")
        for row in conn.execute(f"SELECT * FROM {table}")
    )
    conn.close()
    found = set()
    for part in text.split('"kid":"')[1:]:
        found.add(part.split('"', 1)[0])
    return found


async def test_rotate_sqlite_from_k1_to_k2_then_drop_k1(tmp_path: Path) -> None:
    db = tmp_path / "rot.db"
    url = f"sqlite:///{db}"
    ids = await populate(url, K1)
    assert kids(db) == {"k1"}
    env = {"ORCHESTRION_ENCRYPTION_KEYS": f"{K2},{K1}", "ORCHESTRION_SERVER_URL": ""}
    runner = CliRunner()
    first = await asyncio.to_thread(
        runner.invoke,
        cli,
        ["keys", "rotate", "--db", str(db), "--json", "--batch-size", "2"],
        env=env,
    )
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    assert summary["primary"] == "k2"
    assert summary["rewritten"]["executions"] >= 8  # inputs of 4 executions, results, errors
    assert summary["rewritten"]["node_runs"] >= 4
    assert summary["rewritten"]["events"] >= 1
    assert summary["rewritten"]["node_logs"] == 4
    assert summary["unreadable"] == {} and summary["changed_meanwhile"] == 0
    assert kids(db) == {"k2"}
    again = await asyncio.to_thread(
        runner.invoke, cli, ["keys", "rotate", "--db", str(db)], env=env
    )
    assert again.exit_code == 0, again.output
    assert "re-encrypted 0 value(s) with key 'k2'" in again.stdout
    await check_readable(url, K2, ids)  # k1 removed from the ring


async def test_an_interrupted_rotation_goes_on_when_run_again(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'stop.db'}"
    ids = await populate(url, K1)
    ring = KeyRing.from_env(f"{K2},{K1}")

    def stop_after_first_batch(table: str, rows: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        await rotate(url, ring, batch_size=1, progress=stop_after_first_batch)
    assert kids(tmp_path / "stop.db") == {"k1", "k2"}
    report = await rotate(url, ring, batch_size=1)
    assert report.done and report.current >= 1
    assert kids(tmp_path / "stop.db") == {"k2"}
    await check_readable(url, K2, ids)


async def test_values_on_a_key_not_in_the_ring_are_reported_by_id(tmp_path: Path) -> None:
    db = tmp_path / "lost.db"
    await populate(f"sqlite:///{db}", K1)
    env = {"ORCHESTRION_ENCRYPTION_KEYS": K2, "ORCHESTRION_SERVER_URL": ""}
    result = await asyncio.to_thread(
        CliRunner().invoke, cli, ["keys", "rotate", "--db", str(db)], env=env
    )
    assert result.exit_code == 1
    assert "key 'k1' is not in ORCHESTRION_ENCRYPTION_KEYS" in result.stdout
    assert kids(db) == {"k1"}  # nothing it could not read was touched


async def test_dry_run_counts_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "dry.db"
    await populate(f"sqlite:///{db}", K1)
    report = await rotate(f"sqlite:///{db}", KeyRing.from_env(f"{K2},{K1}"), dry_run=True)
    assert sum(report.rewritten.values()) >= 13
    assert kids(db) == {"k1"}


async def test_rotate_postgres_from_k1_to_k2_then_drop_k1(postgres_url: str) -> None:
    ids = await populate(postgres_url, K1)
    report = await rotate(postgres_url, KeyRing.from_env(f"{K2},{K1}"), batch_size=3)
    assert report.done
    assert report.rewritten["executions"] >= 8 and report.rewritten["node_runs"] >= 4
    second = await rotate(postgres_url, KeyRing.from_env(f"{K2},{K1}"))
    assert sum(second.rewritten.values()) == 0 and second.current == sum(report.rewritten.values())
    await check_readable(postgres_url, K2, ids)


def test_generate_prints_a_key_line_the_ring_accepts() -> None:
    result = CliRunner().invoke(cli, ["keys", "generate", "--id", "k7"])
    assert result.exit_code == 0, result.output
    line = result.stdout.strip()
    ring = KeyRing.from_env(line)
    assert ring.primary == "k7" and len(ring.keys["k7"]) == 32
    default = CliRunner().invoke(cli, ["keys", "generate"])
    assert KeyRing.from_env(default.stdout.strip()).primary.startswith("k20")
    bad = CliRunner().invoke(cli, ["keys", "generate", "--id", "a:b"])
    assert bad.exit_code == 2


async def test_rotation_beside_a_running_engine(tmp_path: Path) -> None:
    db = tmp_path / "live.db"
    url = f"sqlite:///{db}"
    waiting = {
        "name": "rot-wait",
        "dag": {
            "nodes": [
                *WORKFLOW["dag"]["nodes"][:1],  # type: ignore[index]
                {
                    "id": "ok",
                    "handler": "approval",
                    "dependencies": ["a"],
                    "data_classification": "pii",
                    "config": {"message": "check {{ a.output.secret }}"},
                },
            ]
        },
    }
    async with Engine(url, governance=governance(K1)) as engine:
        record = await engine.start_execution(waiting, {"name": "dee"})
        await engine.settle(record.id, timeout=20)
    async with Engine(url, governance=governance(f"{K2},{K1}")) as engine:
        report = await rotate(url, KeyRing.from_env(f"{K2},{K1}"), batch_size=2)
        assert report.done
        await engine.decide(record.id, "ok", approved=True, by="ops")
        result = await engine.wait(record.id, timeout=20)
    assert result.status is ExecutionStatus.COMPLETED
    assert kids(db) == {"k2"}
    async with Engine(url, governance=governance(K2), resume=False) as engine:
        final = await engine.result(record.id)
    assert final.nodes["a"].output == {"secret": "s3cr3t-dee"}
    assert final.nodes["ok"].output["approved"] is True
