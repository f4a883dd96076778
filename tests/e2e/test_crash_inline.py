"""kill -9 of a process running a chain of inline python functions, then a new engine.

Inline functions run inside the engine's turn and are committed with what follows them, so
a kill loses at most the uncommitted tail, which the next engine runs again: a node that was
committed completed before the kill never runs again, every node ends completed exactly
once in the journal, and the chain's output is what an uninterrupted run gives.
"""

from __future__ import annotations

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
SCRIPT = [sys.executable, str(HERE / "inline_chain.py")]


def _completed(db: Path) -> set[str]:
    try:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT node_id FROM node_runs WHERE state = 'completed'")
            return {node for (node,) in rows.fetchall()}
    except sqlite3.OperationalError:
        return set()  # not created yet


def test_kill_9_in_a_chain_of_inline_functions_loses_nothing(tmp_path: Path) -> None:
    db, log = tmp_path / "inline.db", tmp_path / "runs.log"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.Popen(
        [*SCRIPT, str(db), str(log), "start"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    before: set[str] = set()
    while time.monotonic() < deadline and len(before) < 500:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
        before = _completed(db)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.stderr is not None
    proc.stderr.close()
    before = _completed(db)
    assert 500 <= len(before) < 5000, len(before)

    resumed = subprocess.run(
        [*SCRIPT, str(db), str(log), "resume"], env=env, capture_output=True, text=True, timeout=120
    )
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split(maxsplit=1) == ["completed", "{'c4999': 5000}\n"]
    assert len(_completed(db)) == 5000

    runs = Counter(line.split()[0] for line in log.read_text().splitlines())
    assert set(runs) == {f"c{i}" for i in range(5000)}
    twice = {node for node in before if runs[node] != 1}
    assert not twice, f"committed before the kill, yet ran again: {sorted(twice)[:5]}"
    with sqlite3.connect(db) as conn:
        ends = Counter(
            node
            for (node,) in conn.execute("SELECT node_id FROM events WHERE type = 'node.completed'")
        )
    assert len(ends) == 5000 and set(ends.values()) == {1}
