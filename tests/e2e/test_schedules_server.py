"""Schedules through ``orchestrion serve`` as real uvicorn processes: an every-second schedule,
the ``/v1/schedules`` verbs, and two servers on one SQLite file killed with SIGKILL while they
fire, with no tick lost and none doubled."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from test_api_server import CLI, Server

from orchestrion.cli.exits import EXIT_NOT_FOUND

pytestmark = pytest.mark.slow

DEFINITION = """\
name: heartbeat
triggers:
  - type: scheduled
    name: every_second
    schedule: "* * * * * *"
    catchup: all
    inputs: {source: schedule}
dag:
  nodes:
    - id: beat
      handler: noop
"""
SCHEDULE = "heartbeat:every_second"
FAST = {"ORCHESTRION_SCHEDULER_INTERVAL": "0.2", "ORCHESTRION_SCHEDULER_LEASE_SECONDS": "2"}
YAML = {"Content-Type": "application/yaml"}


def _submit(url: str) -> None:
    answer = httpx.post(f"{url}/v1/workflow", content=DEFINITION, headers=YAML, timeout=10)
    assert answer.status_code == 201, answer.text


def _scheduled_keys(db: Path) -> Counter[str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT idempotency_key FROM executions WHERE idempotency_key LIKE 'schedule:%'"
        ).fetchall()
    return Counter(key for (key,) in rows)


def _firings(db: Path) -> list[tuple[float, str, str | None]]:
    with sqlite3.connect(db) as conn:
        return conn.execute(
            "SELECT tick_at, status, execution_id FROM schedule_firings ORDER BY tick_at"
        ).fetchall()


def test_an_every_second_schedule_and_its_verbs(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    server = Server(tmp_path, db, FAST)
    try:
        _submit(server.url)
        time.sleep(3.5)
        listed = httpx.get(f"{server.url}/v1/schedules").json()["schedules"]
        assert [s["id"] for s in listed] == [SCHEDULE]
        assert listed[0]["state"] == "active" and listed[0]["schedule"] == "* * * * * *"
        one = httpx.get(f"{server.url}/v1/schedules/{SCHEDULE}").json()
        started = [f for f in one["recent_firings"] if f["status"] == "started"]
        assert len(started) >= 2
        execution = httpx.get(f"{server.url}/v1/workflows/{started[-1]['execution_id']}").json()
        assert execution["status"] == "COMPLETED"

        paused = httpx.post(f"{server.url}/v1/schedules/{SCHEDULE}/pause").json()
        assert paused["state"] == "paused" and paused["next_tick_at"] is None
        time.sleep(0.5)
        before = sum(_scheduled_keys(db).values())
        time.sleep(1.5)
        assert sum(_scheduled_keys(db).values()) == before  # nothing fires while paused
        fired = httpx.post(f"{server.url}/v1/schedules/{SCHEDULE}/trigger")
        assert fired.status_code == 202 and fired.json()["status"] == "pending"
        time.sleep(1.0)
        assert sum(_scheduled_keys(db).values()) == before + 1  # trigger-now fires when paused
        assert (
            httpx.post(f"{server.url}/v1/schedules/{SCHEDULE}/resume").json()["state"] == "active"
        )
        deleted = httpx.delete(f"{server.url}/v1/schedules/{SCHEDULE}")
        assert deleted.status_code == 200 and deleted.json()["state"] == "deleted"
        missing = httpx.get(f"{server.url}/v1/schedules/{SCHEDULE}")
        assert missing.status_code == 404 and SCHEDULE in missing.text
        assert httpx.post(f"{server.url}/v1/schedules/nope/pause").status_code == 404
    finally:
        assert server.stop() == 0
    assert all(count == 1 for count in _scheduled_keys(db).values())


def _holder(db: Path) -> str | None:
    with sqlite3.connect(db) as conn:
        row = conn.execute("SELECT owner FROM leases WHERE name = 'scheduler'").fetchone()
    return None if row is None else str(row[0])


def _kill_holder(db: Path, servers: list[Server]) -> Server:
    """SIGKILL the server that holds the scheduler lease (found by its log line)."""
    owner = _holder(db)
    assert owner is not None
    for server in servers:
        if server.process.poll() is None and owner in _owners(server):
            server.stop(signal.SIGKILL)
            return server
    raise AssertionError(f"no running server holds the lease of {owner}")


def _owners(server: Server) -> str:
    return httpx.get(f"{server.url}/health", timeout=5).text + server.log.read_text()


def test_two_servers_killed_while_firing_lose_no_tick_and_double_none(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    servers = [Server(tmp_path, db, FAST)]
    servers.append(Server(tmp_path, db, FAST))
    try:
        _submit(servers[0].url)
        for _ in range(2):
            time.sleep(3.0)
            killed = _kill_holder(db, servers)
            servers.remove(killed)
            servers.append(Server(tmp_path, db, FAST))
        time.sleep(4.0)
    finally:
        for server in servers:
            server.stop()
    firings = _firings(db)
    ticks = [tick for tick, _, _ in firings]
    assert len(ticks) >= 8
    # Every second from the first tick to the last, once each, each started once.
    assert ticks == [ticks[0] + i for i in range(len(ticks))]
    assert all(status == "started" for _, status, _ in firings), firings
    keys = _scheduled_keys(db)
    assert len(keys) == len(ticks) and set(keys.values()) == {1}


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "schedule", *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_schedule_commands_locally_and_through_the_server(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    server = Server(tmp_path, db, FAST)
    try:
        _submit(server.url)
        listed = _cli("list", "--server", server.url, "--json")
        assert listed.returncode == 0, listed.stderr
        assert [row["id"] for row in json.loads(listed.stdout)] == [SCHEDULE]
        paused = _cli("pause", SCHEDULE, "--server", server.url)
        assert paused.returncode == 0 and f"paused {SCHEDULE}" in paused.stdout
        local = _cli("list", "--db", str(db), "--json")
        assert json.loads(local.stdout)[0]["state"] == "paused"
        assert _cli("resume", SCHEDULE, "--db", str(db)).returncode == 0
        assert httpx.get(f"{server.url}/v1/schedules/{SCHEDULE}").json()["state"] == "active"
        fired = _cli("trigger-now", SCHEDULE, "--server", server.url)
        assert fired.returncode == 0, fired.stderr
        missing = _cli("delete", "nope:nothing", "--server", server.url)
        assert missing.returncode == EXIT_NOT_FOUND and "nope:nothing" in missing.stderr
        assert _cli("delete", "nope:nothing", "--db", str(db)).returncode == EXIT_NOT_FOUND
        assert _cli("delete", SCHEDULE, "--db", str(db)).returncode == 0
        assert httpx.get(f"{server.url}/v1/schedules").json()["schedules"] == []
    finally:
        server.stop()
