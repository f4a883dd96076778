"""A parent and its child driven by two processes on one SQLite file (each taken over by a
different survivor of a crash): the child's end reaches the parent in the other process, and
a parent whose process was killed resolves from the child's end once it is resumed."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from test_handover_cli import CHILD_APPROVAL, CLI, HERE, PARENT, _env, _until, _write, cli

from orchestrion.engine.facade import Engine

pytestmark = pytest.mark.slow


def _hold(db: Path, execution_id: str, **env: str) -> subprocess.Popen[str]:
    """A process that drives ``execution_id`` (and nothing else) until it is stopped."""
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "hold_executions.py"), f"sqlite:///{db}", execution_id],
        env={**_env(), **env},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    return proc


def _stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    proc.send_signal(sig)
    try:
        proc.communicate(timeout=30)  # reaped, its pipe closed
    finally:
        proc.kill()


def _parent_waiting_on_child(tmp_path: Path) -> tuple[Path, str, str]:
    db = tmp_path / "p.db"
    assert cli("run", _write(tmp_path, "sign", CHILD_APPROVAL), "--db", str(db)).returncode == 4
    waiting = cli("run", _write(tmp_path, "release", PARENT), "--db", str(db), "--json")
    assert waiting.returncode == 4, waiting.stderr
    parent = json.loads(waiting.stdout)["execution_id"]
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id FROM executions WHERE parent_execution_id = ?", (parent,))
        ((child,),) = rows.fetchall()
    return db, parent, child


def _sub_waits(db: Path, parent: str) -> int:
    """How often the parent's ``sub`` wait was committed."""
    with sqlite3.connect(db) as conn:
        sql = "SELECT COUNT(*) FROM events WHERE execution_id = ? AND node_id = 'sub'"
        return int(conn.execute(f"{sql} AND type = 'node.waiting'", (parent,)).fetchone()[0])


def _ends(db: Path, parent: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        status = conn.execute("SELECT status FROM executions WHERE id = ?", (parent,)).fetchone()
        types = conn.execute(
            "SELECT type FROM events WHERE execution_id = ? AND type IN"
            " ('execution.completed', 'execution.failed', 'execution.cancelled')",
            (parent,),
        ).fetchall()
    return [(status[0], row[0]) for row in types]


def test_approving_a_child_finishes_its_parent_driven_by_another_process(tmp_path: Path) -> None:
    db, parent, child = _parent_waiting_on_child(tmp_path)
    child_owner = _hold(db, child)
    parent_owner = _hold(db, parent)
    try:
        # The parent's recovery ran its node again: it found the child unfinished, and waits.
        _until(lambda: _sub_waits(db, parent) >= 2)
        began = time.monotonic()
        # Asked of the child's process; the command then follows the whole run to its end.
        done = cli("approve", child, "ask", "--by", "ada", "--db", str(db), "--json", timeout=30)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - began < 15
        result = json.loads(done.stdout)
        assert result["execution_id"] == parent
        assert result["status"].lower() == "completed"
        assert result["nodes"]["ship"]["output"] == {"signed": "by ada"}
        time.sleep(1.0)  # whatever would act twice has had its chance
        assert _ends(db, parent) == [("completed", "execution.completed")]
    finally:
        _stop(child_owner)
        _stop(parent_owner)


NAP = {"name": "nap", "dag": {"nodes": [{"id": "pause", "handler": "delay",
                                         "config": {"seconds": 8}}]}}  # fmt: skip
CALLS_NAP = {"name": "calls-nap", "dag": {"nodes": [{"id": "sub", "handler": "workflow",
                                                     "config": {"workflow": "nap"}}]}}  # fmt: skip
SHORT_LEASE = {"ORCHESTRION_LEASE_SECONDS": "2"}


def test_a_parent_killed_before_its_child_ended_elsewhere_resolves_on_resume(
    tmp_path: Path,
) -> None:
    """The parent's process is killed; the child's process ends the child meanwhile (the
    parent's owner it tells is gone): resumed, the parent resolves from the child's end."""
    db = tmp_path / "k.db"
    env = {**_env(), **SHORT_LEASE}
    asyncio.run(_submit(db, NAP))
    run = subprocess.Popen(
        [*CLI, "run", _write(tmp_path, "calls-nap", CALLS_NAP), "--db", str(db), "-q"], env=env
    )
    try:
        parent = _until(lambda: _top(db))
        _until(lambda: _sub_waits(db, parent) >= 1)
    finally:
        run.send_signal(signal.SIGKILL)
        run.wait(timeout=30)
    ((child, _),) = _children(db, parent)
    time.sleep(2.5)  # the killed run's leases run out
    child_owner = _hold(db, child, **SHORT_LEASE)
    parent_owner = _hold(db, parent, **SHORT_LEASE)
    try:
        _until(lambda: _sub_waits(db, parent) >= 2)
        _stop(parent_owner, signal.SIGKILL)
        _until(lambda: _children(db, parent) == [(child, "completed")])
    finally:
        _stop(child_owner)
        _stop(parent_owner)
    time.sleep(2.5)  # the killed parent's lease runs out
    resumed = cli("resume", parent, "--db", str(db), "--json", timeout=60)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"].lower() == "completed"
    assert _ends(db, parent) == [("completed", "execution.completed")]
    assert _children(db, parent) == [(child, "completed")]  # no second child


async def _submit(db: Path, spec: dict[str, Any]) -> None:
    async with Engine(f"sqlite:///{db}", resume=False) as engine:
        await engine.submit(spec)


def _top(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id FROM executions WHERE parent_execution_id IS NULL")
        found = rows.fetchall()
    return found[0][0] if found else None


def _children(db: Path, parent: str) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        sql = "SELECT id, status FROM executions WHERE parent_execution_id = ?"
        return [(row[0], row[1]) for row in conn.execute(sql, (parent,))]
