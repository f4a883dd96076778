"""Retention end to end on a real SQLite file: ``orchestrion purge`` (a subprocess) and the
server's periodic sweep delete executions finished long enough ago, with their node runs and
events; the audit trail keeps every record, verifies, and records each purge."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from workers_server import WorkersServer

from audit_helpers import AUDIT_ENV, audited
from orchestrion.engine.facade import Engine
from orchestrion.errors import ExecutionNotFound
from orchestrion.governance.retention import DAY, RetentionSweeper
from orchestrion.store.audit import AuditFilter

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
FLOW = {"name": "kept-or-not", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


def orchestrion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    full_env.update({"COLUMNS": "200", **AUDIT_ENV, **(env or {})})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env)


async def two_runs(db: Path) -> tuple[str, str]:
    """An execution that finished 40 days ago (its times moved back) and a recent one."""
    async with Engine(f"sqlite:///{db}", governance=audited()) as engine:
        old = (await engine.run(FLOW)).execution_id
        recent = (await engine.run(FLOW)).execution_id
    conn = sqlite3.connect(db)
    conn.execute(
        "UPDATE executions SET finished_at = finished_at - ?, created_at = created_at - ?"
        " WHERE id = ?",
        (40 * DAY, 40 * DAY, old),
    )
    conn.commit()
    conn.close()
    return old, recent


def lease_holder(db: Path) -> int | None:
    """The process holding the retention sweep's lease (its owner is host:pid:nonce)."""
    conn = sqlite3.connect(db)
    try:
        found = conn.execute("SELECT owner FROM leases WHERE name = 'retention'").fetchone()
    finally:
        conn.close()
    return int(found[0].split(":")[1]) if found else None


def rows(db: Path, table: str, execution_id: str) -> int:
    column = "id" if table == "executions" else "execution_id"
    conn = sqlite3.connect(db)
    try:
        (count,) = conn.execute(
            f"SELECT count(*) FROM {table} WHERE {column} = ?", (execution_id,)
        ).fetchone()
    finally:
        conn.close()
    return int(count)


async def test_purge_command_deletes_old_executions_and_audits_itself(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    old, recent = await two_runs(db)
    before = rows(db, "events", old)
    assert before > 0 and rows(db, "node_runs", old) == 1

    done = orchestrion("purge", "--older-than", "30d", "--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["purged"] == 1
    for table in ("executions", "node_runs", "events"):
        assert rows(db, table, old) == 0, table
        assert rows(db, table, recent) > 0, table

    listed = orchestrion("audit", "list", "--db", str(db), "--action", "retention.", "--json")
    (purge,) = json.loads(listed.stdout)
    assert purge["actor"].startswith("cli")
    assert purge["details"]["executions"] == 1
    audited_old = orchestrion("audit", "list", "--db", str(db), "--execution", old, "--json")
    assert len(json.loads(audited_old.stdout)) == before  # the trail keeps its records
    assert orchestrion("audit", "verify", "--db", str(db)).returncode == 0

    no_days = orchestrion("purge", "--db", str(db))
    assert no_days.returncode == 2 and "retention.days" in no_days.stderr
    bad = orchestrion("purge", "--older-than", "a while", "--db", str(db))
    assert bad.returncode == 2 and "--older-than" in bad.stderr

    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\nretention:\n  days: 30\n")
    by_policy = orchestrion(
        "purge", "--db", str(db), "--json", env={"ORCHESTRION_GOVERNANCE_FILE": str(policy)}
    )
    assert by_policy.returncode == 0, by_policy.stderr
    assert json.loads(by_policy.stdout)["purged"] == 0


async def test_the_periodic_sweep_applies_retention_days(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    old, recent = await two_runs(db)
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\nretention:\n  days: 30\n")
    async with Engine(f"sqlite:///{db}", governance=audited(policy)) as engine:
        sweeper = RetentionSweeper.for_policy(engine.audit, interval=0.05, delay=0)
        assert sweeper is not None and sweeper.max_age == 30 * DAY
        sweeper.start()
        try:
            for _ in range(200):
                if sweeper.sweeps >= 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            await sweeper.stop()
        with pytest.raises(ExecutionNotFound):
            await engine.store.get_execution(old)
        await engine.store.get_execution(recent)
        purges = await engine.audit.list(AuditFilter(action_prefix="retention."))
        assert [p.details["executions"] for p in purges if p.details][:2] == [1, 0]
        assert {p.actor for p in purges} == {"retention"}
        assert (await engine.audit.verify()).ok
    async with Engine(f"sqlite:///{db}", governance=audited()) as engine:
        assert RetentionSweeper.for_policy(engine.audit) is None  # the default keeps all


async def test_the_server_processes_of_one_service_sweep_one_at_a_time(tmp_path: Path) -> None:
    # Two server processes on one database, each with a sweeper, sweeping every second.
    db = tmp_path / "w.db"
    old, recent = await two_runs(db)
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\nretention:\n  days: 30\n")
    env = {
        **AUDIT_ENV,
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        "ORCHESTRION_RETENTION_SWEEP_SECONDS": "1",
    }
    server = WorkersServer(tmp_path, db, workers=2, env=env)
    try:
        deadline = time.monotonic() + 30
        while rows(db, "executions", old) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        await asyncio.sleep(6)  # several intervals: time for two sweepers to show
        # The holder stopped gracefully (SIGTERM; the parent starts another in its place)
        # gives the lease up: the other process sweeps from its next interval on.
        holder = lease_holder(db)
        assert holder in server.children()
        handed_over = time.time()
        os.kill(holder, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while lease_holder(db) in (holder, None) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert lease_holder(db) in server.children()
        await asyncio.sleep(2)
    finally:
        assert server.stop() == 0, server.log.read_text()
    assert rows(db, "executions", old) == 0 and rows(db, "executions", recent) == 1
    listed = orchestrion("audit", "list", "--db", str(db), "--action", "retention.", "--json")
    purges = sorted(json.loads(listed.stdout), key=lambda p: p["at"])
    before = [p for p in purges if p["at"] < handed_over]
    assert len(before) >= 5 and len(purges) > len(before), purges
    # One sweep per interval for the service: the execution is purged (and audited) once,
    # and no two sweeps come closer than the interval, as two sweepers' would.
    assert [p["details"]["executions"] for p in purges].count(1) == 1, purges
    assert sum(p["details"]["executions"] for p in purges) == 1
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(before)]
    assert min(gaps) > 0.9, gaps
    assert orchestrion("audit", "verify", "--db", str(db)).returncode == 0
    assert "retention purge failed" not in server.log.read_text()
