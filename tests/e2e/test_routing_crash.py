"""kill -9 of a real engine process while it routes: no escalation lost, none doubled.

The first process starts the DORA example without documents: its routing rules escalate and
then ask the CFO or the CRO for an approval. Both notices are journalled with the steps that
decided them and handed to a sink that hangs, and the process is killed there (after the
commit, before any confirmation). The next engine on the database recovers the execution,
journals no notice again, and sends both again under the same keys until the sink confirms
them; an engine after that sends nothing.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
SCRIPT = [sys.executable, str(HERE / "notice_process.py")]


def _events(db: Path, kind: str) -> list[dict[str, object]]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT data FROM events WHERE type = ? ORDER BY seq", (kind,))
        return [json.loads(row[0]) for row in rows]


def _lines(out: Path) -> list[str]:
    return out.read_text().splitlines() if out.exists() else []


def test_kill_9_after_the_routing_commit_loses_and_doubles_no_escalation(tmp_path: Path) -> None:
    db, out = tmp_path / "routing.db", tmp_path / "notices.txt"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRION_")}
    log = tmp_path / "first.log"
    with log.open("wb") as errors:
        first = subprocess.Popen(
            [*SCRIPT, str(db), str(out), "start-hang"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    try:
        deadline = time.monotonic() + 60
        while len(_lines(out)) < 2:  # both notices handed to the (hanging) sink
            assert first.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the notices never reached the sink"
            time.sleep(0.02)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    assert first.returncode == -signal.SIGKILL
    journalled = _events(db, "execution.notice")
    assert [n["kind"] for n in journalled] == ["escalation", "approval_required"]
    assert _events(db, "execution.notice_delivered") == []  # killed before confirming

    resumed = subprocess.run(
        [*SCRIPT, str(db), str(out), "resume"], env=env, capture_output=True, text=True, timeout=90
    )
    assert resumed.returncode == 0, resumed.stderr
    assert _events(db, "execution.notice") == journalled  # none journalled twice
    keys = [line.split()[0] for line in _lines(out)]
    assert Counter(keys) == Counter({key: 2 for key in set(keys)}) and len(set(keys)) == 2
    confirmed = {str(d["key"]) for d in _events(db, "execution.notice_delivered")}
    assert confirmed == set(keys)  # same keys: a sink drops what it has seen

    again = subprocess.run(
        [*SCRIPT, str(db), str(out), "resume"], env=env, capture_output=True, text=True, timeout=90
    )
    assert again.returncode == 0, again.stderr
    assert len(_lines(out)) == 4  # confirmed notices are not sent again
    with sqlite3.connect(db) as conn:
        [(status,)] = conn.execute("SELECT status FROM executions").fetchall()
    assert status == "waiting"  # still waiting for the CFO or the CRO
