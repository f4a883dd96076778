"""Where a command hands over, as a user meets it: real CLI processes on one SQLite file.

A run stops at a child's approval with the command that decides it; approving the child
finishes the parent; SIGTERM stops ``run`` and ``resume`` as Ctrl-C does; cancelling a parent
whose process was killed cancels its children too.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sign_release import RELEASE, sign

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "orchestrion.cli.app"]

CHILD_APPROVAL = sign(message="sign?")
PARENT = RELEASE


def _slow(name: str, seconds: float, log: Path) -> dict[str, Any]:
    return {
        "name": name,
        "dag": {
            "nodes": [
                {
                    "id": "work",
                    "handler": "python",
                    "config": {
                        "function": "crash_effects:slow_effect",
                        "params": {"log": str(log), "seconds": seconds},
                    },
                }
            ]
        },
    }


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
    return env


def cli(
    *args: str, cwd: Path | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, env=_env(), cwd=cwd
    )


def _write(folder: Path, name: str, spec: dict[str, Any]) -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(spec))
    return str(path)


def _executions(db: Path) -> dict[str, tuple[str, str | None, str | None]]:
    """id -> (status, owner, parent id), read as another process would."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT id, status, owner, parent_execution_id FROM executions")
        return {row[0]: (row[1], row[2], row[3]) for row in rows}


def _until(check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except sqlite3.OperationalError:  # the table is not made yet
            found = None
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_run_hands_over_at_a_childs_approval_and_approving_it_finishes_the_parent(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "h.db")
    assert cli("run", _write(tmp_path, "sign", CHILD_APPROVAL), "--db", db).returncode == 4
    waiting = cli("run", _write(tmp_path, "release", PARENT), "--db", db, "--json")
    assert waiting.returncode == 4, waiting.stderr
    parent = json.loads(waiting.stdout)
    assert parent["status"].lower() == "waiting"
    children = [
        eid for eid, (_, _, up) in _executions(Path(db)).items() if up == parent["execution_id"]
    ]
    assert len(children) == 1
    command = f"orchestrion approve {children[0]} ask --db {db}"
    assert command in waiting.stderr, waiting.stderr

    done = cli("approve", children[0], "ask", "--by", "ada", "--db", db, "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["execution_id"] == parent["execution_id"]  # the whole run is shown
    assert result["status"].lower() == "completed"
    assert result["nodes"]["ship"]["output"] == {"signed": "by ada"}


def test_resume_and_retry_hand_over_at_an_approval(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    flow = _write(tmp_path, "sign", CHILD_APPROVAL)
    assert cli("run", flow, "--db", str(db), "-q").returncode == 4
    # Resumed while it waits (after a crash, say): it hands over again instead of waiting.
    resumed = cli("resume", "--db", str(db))
    assert resumed.returncode == 4, resumed.stderr
    assert "orchestrion approve" in resumed.stderr and " ask " in resumed.stderr
    (execution_id,) = _executions(db)
    rejected = cli("reject", execution_id, "ask", "--db", str(db))
    assert rejected.returncode == 1, rejected.stderr
    # A retry of the rejected run reaches the approval again: it hands over too.
    retried = cli("retry", execution_id, "--db", str(db))
    assert retried.returncode == 4, retried.stderr
    assert f"orchestrion approve {execution_id} ask --db {db}" in retried.stderr


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a shell's background job starts


@pytest.mark.parametrize("background", [False, True], ids=["foreground", "sigint-ignored"])
def test_sigterm_stops_run_gracefully_and_resume_carries_on_at_once(
    tmp_path: Path, background: bool
) -> None:
    db = tmp_path / "h.db"
    log = tmp_path / "effects.log"
    spec = _slow("slow", 2.0, log)
    work = spec["dag"]["nodes"][0]
    spec["dag"]["nodes"].append({**work, "id": "more", "dependencies": ["work"]})
    flow = _write(tmp_path, "slow", spec)
    proc = subprocess.Popen(
        [*CLI, "run", flow, "--db", str(db), "-q"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_ignore_sigint if background else None,
    )
    try:
        _until(lambda: log.exists() and "start work" in log.read_text())
        proc.send_signal(signal.SIGTERM)
        _out, errors = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, errors)
    assert "interrupted" in errors
    # The running attempt had its grace period, and the lease was given back on the way out.
    assert "end work" in log.read_text() and "more" not in log.read_text()
    ((status, owner, _),) = _executions(db).values()
    assert (status, owner) == ("running", None)
    resumed = cli("resume", "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"].lower() == "completed"


def test_sigterm_stops_resume_gracefully(tmp_path: Path) -> None:
    db = tmp_path / "h.db"
    log = tmp_path / "effects.log"
    flow = _write(tmp_path, "slow", _slow("slow", 2.0, log))
    first = subprocess.Popen([*CLI, "run", flow, "--db", str(db), "-q"], env=_env())
    _until(lambda: log.exists() and "start work" in log.read_text())
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    log.write_text("")
    proc = subprocess.Popen(
        [*CLI, "resume", "--db", str(db)],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _until(lambda: "start work" in log.read_text())
        proc.send_signal(signal.SIGTERM)
        _out, errors = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, errors)
    ((_, owner, _),) = _executions(db).values()
    assert owner is None


def _killed_while_working(log: Path, *args: str) -> None:
    """Start the CLI with ``args``, and kill -9 it once a node is working."""
    log.write_text("")
    proc = subprocess.Popen([*CLI, *args], env=_env())
    try:
        _until(lambda: "start work" in log.read_text())
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def test_cancel_of_a_killed_parent_cancels_its_children_and_grandchildren(
    tmp_path: Path,
) -> None:
    db = tmp_path / "h.db"
    log = tmp_path / "effects.log"

    def calls(name: str, child: str) -> str:
        spec = {"name": name, "dag": {"nodes": [{"id": "sub", "handler": "workflow",
                                                  "config": {"workflow": child}}]}}  # fmt: skip
        return _write(tmp_path, name, spec)

    # Each definition is stored by a first run of it (killed, then cancelled): the cancel of
    # "mid" (killed with its child working) is the two-level case.
    _killed_while_working(log, "run", _write(tmp_path, "sc", _slow("sc", 60.0, log)), "--db",
                          str(db), "-q")  # fmt: skip
    assert cli("cancel", _only(db, "running"), "--db", str(db)).returncode == 0
    _killed_while_working(log, "run", calls("mid", "sc"), "--db", str(db), "-q")
    # Killed as soon as the child works: whether the parent's wait for it was committed by
    # then is a race (its status is "waiting" or still "running"); both must cancel alike.
    assert cli("cancel", _unfinished_top(db), "--db", str(db)).returncode == 0
    assert {row[0] for row in _executions(db).values()} == {"cancelled"}

    _killed_while_working(log, "run", calls("outer", "mid"), "--db", str(db))
    rows = _executions(db)
    parent_id = _unfinished_top(db)
    (child_id,) = [eid for eid, row in rows.items() if row[2] == parent_id]
    (grandchild_id,) = [eid for eid, row in rows.items() if row[2] == child_id]
    assert rows[grandchild_id][0] == "running"

    cancelled = cli("cancel", parent_id, "--db", str(db))
    assert cancelled.returncode == 0, cancelled.stderr
    rows = _executions(db)
    for execution_id in (parent_id, child_id, grandchild_id):
        assert rows[execution_id][0] == "cancelled", rows
    # Nothing is left for a later resume to run to completion.
    assert "nothing to resume" in cli("resume", "--db", str(db)).stdout


def test_cancel_of_a_parent_killed_before_its_wait_was_committed_cancels_its_child(
    tmp_path: Path,
) -> None:
    """The run was killed after its ``workflow`` node had made the child, before the
    parent's wait for it was committed (a trigger holds that commit back, as a kill a moment
    earlier would): only the child's own row names its parent, and the cancel follows it."""
    db = tmp_path / "h.db"
    log = tmp_path / "effects.log"
    _killed_while_working(log, "run", _write(tmp_path, "sc", _slow("sc", 60.0, log)), "--db",
                          str(db), "-q")  # fmt: skip
    assert cli("cancel", _only(db, "running"), "--db", str(db)).returncode == 0
    spec = {"name": "outer", "dag": {"nodes": [{"id": "sub", "handler": "workflow",
                                                "config": {"workflow": "sc"}}]}}  # fmt: skip
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER held BEFORE INSERT ON events WHEN NEW.type = 'node.waiting'"
            " BEGIN SELECT RAISE(ABORT, 'the wait is held back'); END"
        )
    _killed_while_working(log, "run", _write(tmp_path, "outer", spec), "--db", str(db), "-q")
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER held")
    rows = _executions(db)
    parent_id = _unfinished_top(db)
    (child_id,) = [eid for eid, row in rows.items() if row[2] == parent_id]
    assert (rows[parent_id][0], rows[child_id][0]) == ("running", "running")

    cancelled = cli("cancel", parent_id, "--db", str(db))
    assert cancelled.returncode == 0, cancelled.stderr
    assert {row[0] for row in _executions(db).values()} == {"cancelled"}
    assert "nothing to resume" in cli("resume", "--db", str(db)).stdout


def _unfinished_top(db: Path) -> str:
    """The one top-level execution not cancelled yet."""
    (found,) = [eid for eid, row in _executions(db).items() if row[0] != "cancelled" and not row[2]]
    return found


def _only(db: Path, status: str) -> str:
    (found,) = [eid for eid, row in _executions(db).items() if row[0] == status]
    return found


def _beside_approval(name: str, sibling: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "dag": {
            "nodes": [
                {"id": "gate", "handler": "approval", "config": {"message": "ok?"}},
                sibling,
                {"id": "after", "handler": "noop", "dependencies": ["gate", sibling["id"]]},
            ]
        },
    }


DELAY = {"id": "pause", "handler": "delay", "config": {"seconds": 2}}
CHILD = {"id": "kid", "handler": "workflow", "config": {"workflow": "nap"}}
NAP = {"name": "nap", "dag": {"nodes": [DELAY]}}


@pytest.mark.parametrize(
    ("sibling", "stored"),
    [(DELAY, None), (CHILD, NAP)],
    ids=["delay-beside-the-approval", "child-beside-the-approval"],
)
def test_approve_carries_on_with_what_was_under_way_beside_the_approval(
    tmp_path: Path, sibling: dict[str, Any], stored: dict[str, Any] | None
) -> None:
    """The run hands over (exit 4) while a delay or a child beside the approval is still
    under way; the approve that follows drives them too, to the end, instead of waiting on a
    timer nobody armed or a child nobody drives."""
    db = str(tmp_path / "b.db")
    if stored is not None:
        assert cli("run", _write(tmp_path, "nap", stored), "--db", db).returncode == 0
    waiting = cli("run", _write(tmp_path, "flow", _beside_approval("flow", sibling)), "--db", db)
    assert waiting.returncode == 4, (waiting.stdout, waiting.stderr)
    execution = _until(
        lambda: [e for e, (s, _, up) in _executions(Path(db)).items() if s == "waiting" and not up]
    )[0]
    done = cli("approve", execution, "gate", "--by", "ada", "--db", db, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"].lower() == "completed"
    assert all(status == "completed" for status, _, _ in _executions(Path(db)).values())


def test_resume_of_a_parent_whose_child_waits_hands_over_and_approve_finishes_it(
    tmp_path: Path,
) -> None:
    """`resume <parent>` re-wakes the parent's child node: it must not hand over before that
    wake is applied (the node was left queued, then failed as the engine stopped, and a later
    resume started a second child)."""
    db = str(tmp_path / "r.db")
    assert cli("run", _write(tmp_path, "sign", CHILD_APPROVAL), "--db", db).returncode == 4
    waiting = cli("run", _write(tmp_path, "release", PARENT), "--db", db, "--json")
    assert waiting.returncode == 4, waiting.stderr
    parent = json.loads(waiting.stdout)["execution_id"]
    resumed = cli("resume", parent, "--db", db, "--json")
    assert resumed.returncode == 4, (resumed.stdout, resumed.stderr)
    assert json.loads(resumed.stdout)["status"].lower() == "waiting"
    children = [eid for eid, (_, _, up) in _executions(Path(db)).items() if up == parent]
    assert len(children) == 1  # no second child
    assert f"orchestrion approve {children[0]} ask --db {db}" in resumed.stderr
    done = cli("approve", children[0], "ask", "--by", "ada", "--db", db, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"].lower() == "completed"


def _killed_when(check: Any, *args: str) -> None:
    """Start the CLI with ``args``, and kill -9 it once ``check()`` holds."""
    proc = subprocess.Popen([*CLI, *args], env=_env())
    try:
        _until(check)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def _hold_waits(db: Path, node: str) -> None:
    """Make the store refuse ``node``'s waits, as a kill a moment before their commit would
    leave them: the child that node made exists, its parent's journal does not name it."""
    with sqlite3.connect(db) as conn:
        conn.execute(
            "CREATE TRIGGER held BEFORE INSERT ON events WHEN NEW.type = 'node.waiting'"
            f" AND NEW.node_id = '{node}' BEGIN SELECT RAISE(ABORT, 'held back'); END"
        )


def _parent_and_child(db: Path) -> tuple[str, str]:
    """The one execution with a child, and that child."""
    ((parent, child),) = [(row[2], eid) for eid, row in _executions(db).items() if row[2]]
    return parent, child


def _release_waits(db: Path) -> None:
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER held")


def _child_waits_at(db: Path, node: str) -> bool:
    """Whether a child execution's ``node`` waits (for a person)."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT 1 FROM node_runs JOIN executions ON id = execution_id WHERE node_id = ?"
            " AND state = 'waiting' AND parent_execution_id IS NOT NULL",
            (node,),
        ).fetchall()
    return bool(rows)


CALLS_SIGN = {"name": "asks", "dag": {"nodes": [
    {"id": "kid", "handler": "workflow", "config": {"workflow": "sign"}},
    {"id": "ship", "handler": "noop", "dependencies": ["kid"],
     "config": {"value": "{{ kid.output.result }}"}},
]}}  # fmt: skip


def test_a_childs_approval_is_listed_and_decided_when_its_parents_wait_was_never_committed(
    tmp_path: Path,
) -> None:
    """The parent's run was killed after its child waited for a person, before the parent's
    own wait for the child was committed: the decision is still the parent's to list, and
    approving it finishes the parent."""
    db = tmp_path / "h.db"
    assert cli("run", _write(tmp_path, "sign", CHILD_APPROVAL), "--db", str(db)).returncode == 4
    _hold_waits(db, "kid")
    _killed_when(lambda: _child_waits_at(db, "ask"), "run", _write(tmp_path, "asks", CALLS_SIGN),
                 "--db", str(db), "-q")  # fmt: skip
    _release_waits(db)
    parent, child = _parent_and_child(db)

    assert asyncio.run(_pending(db, parent)) == [(child, "ask")]
    done = cli("approve", child, "ask", "--by", "ada", "--db", str(db), "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert (result["execution_id"], result["status"].lower()) == (parent, "completed")
    assert result["nodes"]["ship"]["output"] == {"signed": "by ada"}


async def _pending(db: Path, execution_id: str) -> list[tuple[str, str]]:
    """The decisions an execution waits on, as a process that drives nothing reads them."""
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{db}", resume=False) as engine:
        found = await engine.pending_decisions(execution_id)
    return [(decision.execution_id, decision.node_id) for decision in found]


def test_approve_drives_a_child_beside_it_whose_parents_wait_was_never_committed(
    tmp_path: Path,
) -> None:
    """The run was killed with its approval waiting and its child working, the parent's wait
    for that child not committed: approving drives the child too, to the end."""
    db = tmp_path / "h.db"
    log = tmp_path / "effects.log"
    assert (
        cli("run", _write(tmp_path, "sc", _slow("sc", 1.0, log)), "--db", str(db)).returncode == 0
    )
    flow = _beside_approval("flow", {"id": "kid", "handler": "workflow",
                                     "config": {"workflow": "sc"}})  # fmt: skip
    _hold_waits(db, "kid")
    _killed_while_working(log, "run", _write(tmp_path, "flow", flow), "--db", str(db), "-q")
    _release_waits(db)
    parent, child = _parent_and_child(db)
    assert (_executions(db)[parent][0], _executions(db)[child][0]) == ("running", "running")

    done = cli("approve", parent, "gate", "--by", "ada", "--db", str(db), "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["status"].lower() == "completed"
    assert {row[0] for row in _executions(db).values()} == {"completed"}
    assert len([row for row in _executions(db).values() if row[2] == parent]) == 1


def test_resume_of_a_parent_killed_before_its_wait_was_committed_takes_the_same_child(
    tmp_path: Path,
) -> None:
    """Taken over after the kill, the parent runs its ``workflow`` node again: it finds the
    child the killed run made (same key), instead of starting a second one."""
    db = tmp_path / "h.db"
    log = tmp_path / "effects.log"
    assert (
        cli("run", _write(tmp_path, "sc", _slow("sc", 1.0, log)), "--db", str(db)).returncode == 0
    )
    _hold_waits(db, "sub")
    spec = {"name": "outer", "dag": {"nodes": [{"id": "sub", "handler": "workflow",
                                                "config": {"workflow": "sc"}}]}}  # fmt: skip
    _killed_while_working(log, "run", _write(tmp_path, "outer", spec), "--db", str(db), "-q")
    _release_waits(db)
    parent, child = _parent_and_child(db)

    resumed = cli("resume", "--db", str(db), "--json")
    assert resumed.returncode == 0, resumed.stderr
    rows = _executions(db)
    assert [eid for eid, row in rows.items() if row[2] == parent] == [child]  # no second child
    assert (rows[parent][0], rows[child][0]) == ("completed", "completed")
    with sqlite3.connect(db) as conn:
        (output,) = conn.execute(
            "SELECT output FROM node_runs WHERE execution_id = ? AND node_id = 'sub'", (parent,)
        ).fetchone()
    assert json.loads(output)["child_execution_id"] == child
