"""``orchestrion sinks`` on a local database: the events a failing webhook did not take are
listed as dead letters, retried (and then taken) or dropped, as a user sees it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from orchestrion.store.outbox import DeliveryStatus
from sink_helpers import TWO_NODES, Receiver

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def orchestrion(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env
    )


async def _dead_letters(url: str, sinks: str) -> None:
    async with Engine(settings=load_settings(database_url=url, sinks=sinks)) as engine:
        record = await engine.start_execution(TWO_NODES)
        await engine.wait(record.id, timeout=10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if len(await engine.deliveries.list(DeliveryStatus.DEAD)) == 2:
                break
            await asyncio.sleep(0.05)


async def _until_sent(url: str, sinks: str, receiver: Receiver, event_id: str) -> None:
    async with Engine(settings=load_settings(database_url=url, sinks=sinks)):
        deadline = time.monotonic() + 10
        while not any(e["id"] == event_id for e in receiver.events()):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)


def test_dead_letters_are_listed_retried_and_dropped(tmp_path: Path) -> None:
    import os

    receiver = Receiver(statuses=[500, 500])
    try:
        hook = {"name": "ops", "type": "webhook", "url": receiver.url, "events": ["execution.*"]}
        sinks = json.dumps(
            {
                "sinks": [hook],
                "delivery": {"attempts": 1, "interval": 0.05, "initial_backoff": 0.05},
            }
        )
        db = tmp_path / "sinks.db"
        asyncio.run(_dead_letters(f"sqlite:///{db}", sinks))
        env = {**os.environ, "ORCHESTRION_SINKS": sinks}
        listed = orchestrion("sinks", "list", "--db", str(db), "--json", cwd=tmp_path, env=env)
        assert listed.returncode == 0, listed.stderr
        assert json.loads(listed.stdout) == [
            {"name": "ops", "type": "webhook", "events": ["execution.*"], "owed": 0, "dead": 2}
        ]
        owed = orchestrion(
            "sinks", "owed", "--dead", "--db", str(db), "--json", cwd=tmp_path, env=env
        )
        rows: list[dict[str, Any]] = json.loads(owed.stdout)
        assert sorted(r["event_type"] for r in rows) == ["execution.completed", "execution.started"]
        assert all(r["error"] == "HTTP 500 from the webhook" for r in rows)
        table = orchestrion("sinks", "owed", "--db", str(db), cwd=tmp_path, env=env)
        assert "HTTP 500" in table.stdout
        first, second = rows
        retried = orchestrion(
            "sinks", "retry", str(first["id"]), "--db", str(db), cwd=tmp_path, env=env
        )
        assert retried.returncode == 0 and "due again now" in retried.stdout
        dropped = orchestrion(
            "sinks", "drop", str(second["id"]), "--db", str(db), cwd=tmp_path, env=env
        )
        assert dropped.returncode == 0 and "dropped" in dropped.stdout
        missing = orchestrion("sinks", "drop", "999", "--db", str(db), cwd=tmp_path, env=env)
        assert missing.returncode == 5
        # the next engine on the database sends the retried one
        asyncio.run(_until_sent(f"sqlite:///{db}", sinks, receiver, first["event_id"]))
    finally:
        receiver.close()
