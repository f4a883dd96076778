"""kill -9 of a real `orchestrion run` process, then `orchestrion resume`: nothing is lost."""

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
CLI = [sys.executable, "-m", "orchestrion.cli.app"]


def _workflow(log: Path, layers: int = 5, width: int = 10) -> dict[str, object]:
    nodes: list[dict[str, object]] = []
    for layer in range(layers):
        for i in range(width):
            deps = [f"l{layer - 1}_{j}" for j in range(width)] if layer else []
            nodes.append(
                {
                    "id": f"l{layer}_{i}",
                    "handler": "python",
                    "dependencies": deps,
                    "config": {
                        "function": "crash_effects:slow_effect",
                        "params": {"log": str(log), "seconds": 0.15},
                    },
                }
            )
    return {"name": "crash-50", "dag": {"nodes": nodes}}


def _node_states(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        return dict(conn.execute("SELECT node_id, state FROM node_runs").fetchall())


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def test_kill_9_mid_run_then_resume_completes_without_rerunning_completed_nodes(
    tmp_path: Path,
) -> None:
    log = tmp_path / "effects.log"
    db = tmp_path / "crash.db"
    flow = tmp_path / "flow.json"
    flow.write_text(json.dumps(_workflow(log)))

    proc = subprocess.Popen(
        [*CLI, "run", str(flow), "--db", str(db), "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    completed_before: set[str] = set()
    while time.monotonic() < deadline:
        if db.exists():
            try:
                states = _node_states(db)
            except sqlite3.OperationalError:
                states = {}
            completed_before = {n for n, s in states.items() if s == "completed"}
            if len(completed_before) >= 15:
                break
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.stderr is not None
    proc.stderr.close()
    completed_before = {n for n, s in _node_states(db).items() if s == "completed"}
    assert 15 <= len(completed_before) < 50

    resumed = subprocess.run(
        [*CLI, "resume", "--db", str(db), "--json"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    states = _node_states(db)
    assert len(states) == 50 and set(states.values()) == {"completed"}

    starts = Counter(
        line.split()[1] for line in log.read_text().splitlines() if line.startswith("start")
    )
    for node in completed_before:
        assert starts[node] == 1, f"{node} completed before the kill but ran {starts[node]} times"
    assert set(starts) == set(states)
    # Nodes cut off mid-run ran again with the same attempt, hence the same idempotency key.
    keys = Counter(
        line.split()[3] for line in log.read_text().splitlines() if line.startswith("end")
    )
    assert len(keys) == 50


def test_resume_with_nothing_to_do_says_so(tmp_path: Path) -> None:
    sqlite3.connect(tmp_path / "empty.db").close()  # exists, holds nothing yet
    result = subprocess.run(
        [*CLI, "resume", "--db", str(tmp_path / "empty.db")],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0
    assert "nothing to resume" in result.stdout


def test_kill_9_during_a_delay_then_resume_fires_the_timer_once(tmp_path: Path) -> None:
    db = tmp_path / "delay.db"
    flow = tmp_path / "delay.yaml"
    flow.write_text(
        "name: durable-delay\ndag:\n  nodes:\n"
        "    - {id: wait, handler: delay, config: {seconds: 1.5}}\n"
        "    - {id: after, handler: noop, dependencies: [wait], config: {value: done}}\n"
    )
    proc = subprocess.Popen(
        [*CLI, "run", str(flow), "--db", str(db), "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if db.exists():
            try:
                if _node_states(db).get("wait") == "waiting":
                    break
            except sqlite3.OperationalError:
                pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    resumed = subprocess.run(
        [*CLI, "resume", "--db", str(db), "--json"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["nodes"]["after"]["output"] == "done"
    with sqlite3.connect(db) as conn:
        woken = conn.execute(
            "SELECT at FROM events WHERE type = 'node.woken' AND node_id = 'wait'"
        ).fetchall()
        (waited,) = conn.execute(
            "SELECT at FROM events WHERE type = 'node.waiting' AND node_id = 'wait'"
        ).fetchone()
        (recovered,) = conn.execute(
            "SELECT at FROM events WHERE type = 'execution.recovered'"
        ).fetchone()
    assert len(woken) == 1
    # The original deadline held: the delay ended 1.5 s after it began (or at once when the
    # resume came later than that), not 1.5 s after the resume, as a timer armed afresh would.
    assert waited + 1.5 <= woken[0][0] < recovered + 1.5


def test_kill_9_during_a_compensation_then_resume_runs_it_again_once(tmp_path: Path) -> None:
    # Embedded, the compensation runs in the process that died: it is cut off and runs again
    # on resume under the same idempotency key (at-least-once, as a node attempt); the one
    # that had not begun runs once, and the journal has each node compensated once.
    log = tmp_path / "effects.log"
    db = tmp_path / "saga.db"
    flow = tmp_path / "saga.json"

    def undone(node_id: str) -> dict[str, object]:
        return {
            "id": node_id,
            "handler": "noop",
            "compensate": {
                "handler": "python",
                "config": {
                    "function": "crash_effects:slow_effect",
                    "params": {"log": str(log), "seconds": 3},
                },
            },
        }

    failing = {
        "id": "c",
        "handler": "python",
        "dependencies": ["a", "b"],
        "retry": {"max_attempts": 1},
        "config": {"function": "fail", "params": {"message": "c broke"}},
    }
    flow.write_text(
        json.dumps(
            {
                "name": "saga-crash",
                "on_failure": "compensate",
                "dag": {"nodes": [undone("a"), undone("b"), failing]},
            }
        )
    )
    proc = subprocess.Popen(
        [*CLI, "run", str(flow), "--db", str(db), "--quiet"],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (log.exists() and log.read_text().startswith("start")):
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    [cut_off] = [line.split()[1] for line in log.read_text().splitlines()]

    resumed = subprocess.run(
        [*CLI, "resume", "--db", str(db), "--json"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert json.loads(resumed.stdout)["status"] == "FAILED", resumed.stderr
    lines = log.read_text().splitlines()
    starts = Counter(line.split()[1] for line in lines if line.startswith("start"))
    ends = Counter(line.split()[1] for line in lines if line.startswith("end"))
    other = "a" if cut_off == "b" else "b"
    assert starts == {cut_off: 2, other: 1} and ends == {cut_off: 1, other: 1}, lines
    keys = {line.split()[3] for line in lines if line.split()[1] == cut_off}
    assert len(keys) == 1 and next(iter(keys)).endswith(f":{cut_off}:compensate")
    with sqlite3.connect(db) as conn:
        compensated = conn.execute(
            "SELECT node_id FROM events WHERE type = 'node.compensated'"
        ).fetchall()
    assert sorted(n for (n,) in compensated) == ["a", "b"]
