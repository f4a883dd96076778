"""Chains of followers (workflow.completed triggers) run by the local commands: `emit` and
`run` wait for the whole chain, and what an engine leaves owed is started by the next one."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from test_cli import orchestrion

pytestmark = pytest.mark.slow


def _chain(tmp_path: Path, links: int) -> list[str]:
    """ln1 listens to ln.go; ln<i> follows ln<i-1>. The files' paths."""
    paths = []
    for i in range(1, links + 1):
        trigger = (
            "{type: event, event_type: ln.go}"
            if i == 1
            else f"{{type: event, event_type: workflow.completed, source: ln{i - 1}}}"
        )
        path = tmp_path / f"ln{i}.yaml"
        path.write_text(
            f"name: ln{i}\ntriggers:\n  - {trigger}\ndag:\n  nodes:\n"
            "    - {id: a, handler: noop}\n"
        )
        paths.append(str(path))
    return paths


def _ran(db: Path) -> dict[str, str]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT d.name, e.status FROM executions e JOIN definitions d ON d.id = e.definition_id"
        ).fetchall()
    return {name: status for name, status in rows}


def test_emit_runs_the_whole_chain_of_followers(tmp_path: Path) -> None:
    paths = _chain(tmp_path, 6)
    db = tmp_path / "ln.db"
    submits = [arg for path in paths for arg in ("--submit", path)]
    done = orchestrion(
        "emit", "ln.go", "--id", "l1", "--data", "{}", *submits, "--db", str(db), "--json"
    )
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert [e["workflow"] for e in body["executions"]] == ["ln1"]
    assert [(f["workflow"], f["status"]) for f in body["followers"]] == [
        (f"ln{i}", "COMPLETED") for i in range(2, 7)
    ]
    assert _ran(db) == {f"ln{i}": "completed" for i in range(1, 7)}
    plain = orchestrion("emit", "ln.go", "--id", "l2", "--db", str(db))
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.count("  then ln") == 5


def test_run_waits_for_the_followers_of_its_execution(tmp_path: Path) -> None:
    paths = _chain(tmp_path, 4)
    db = tmp_path / "run.db"
    submits = [arg for path in paths[1:] for arg in ("--submit", path)]
    assert orchestrion("emit", "nobody.listens", *submits, "--db", str(db)).returncode == 0
    done = orchestrion("run", paths[0], "--db", str(db))
    assert done.returncode == 0, done.stderr
    assert _ran(db) == {f"ln{i}": "completed" for i in range(1, 5)}
    assert done.stderr.count("then ln") == 3


def test_followers_owed_when_an_engine_stopped_start_at_the_next_resume(tmp_path: Path) -> None:
    paths = _chain(tmp_path, 3)
    db = tmp_path / "owed.db"
    submits = [arg for path in paths for arg in ("--submit", path)]
    assert orchestrion("emit", "ln.go", *submits, "--db", str(db)).returncode == 0
    # What a stopped (or killed) engine leaves: ln3 ended, its follower ln4 not started yet.
    with sqlite3.connect(db) as conn:
        (ln3,) = conn.execute(
            "SELECT e.id FROM executions e JOIN definitions d ON d.id = e.definition_id"
            " WHERE d.name = 'ln3'"
        ).fetchone()
        conn.execute(
            "INSERT INTO follows_owed (execution_id, ending, at) VALUES (?, ?, 0)",
            (ln3, "workflow.completed"),
        )
    [ln4] = _chain(tmp_path, 4)[3:]
    assert orchestrion("emit", "nobody.listens", "--submit", ln4, "--db", str(db)).returncode == 0
    resumed = orchestrion("resume", "--db", str(db))
    assert resumed.returncode == 0, resumed.stderr
    assert _ran(db).get("ln4") == "completed"
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM follows_owed").fetchone() == (0,)


def test_emit_refuses_an_event_id_sent_again_with_another_payload(tmp_path: Path) -> None:
    [ln1] = _chain(tmp_path, 1)
    db = tmp_path / "again.db"
    first = orchestrion("emit", "ln.go", "--id", "e1", "--data", '{"x": 1}', "--submit", ln1,
                        "--db", str(db))  # fmt: skip
    assert first.returncode == 0, first.stderr
    other = orchestrion("emit", "ln.go", "--id", "e1", "--data", '{"x": 5}', "--db", str(db))
    assert other.returncode == 2
    assert "event id 'e1' was sent before with another payload" in other.stderr
    same = orchestrion("emit", "ln.go", "--id", "e1", "--data", '{"x": 1}', "--db", str(db))
    assert same.returncode == 0 and "delivered before" in same.stdout
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM executions").fetchone() == (1,)


def test_resume_takes_quiet_as_run_does(tmp_path: Path) -> None:
    [ln1] = _chain(tmp_path, 1)
    db = str(tmp_path / "q.db")
    assert orchestrion("emit", "nobody.listens", "--submit", ln1, "--db", db).returncode == 0
    for flag in ("-q", "--quiet"):
        done = orchestrion("resume", flag, "--db", db)
        assert done.returncode == 0, done.stderr
        assert "nothing to resume" in done.stdout
