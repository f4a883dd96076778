"""Control verbs from a second terminal: another process on the same SQLite file drives the
execution (``orchestrion run``, or an embedded ``orchestrion serve``); ``cancel``, ``pause``,
``resume``, ``approve`` and ``reject`` with ``--db`` are carried out by that process."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server
from test_handover_cli import CHILD_APPROVAL, CLI, _env, _executions, _slow, _until, _write, cli

pytestmark = pytest.mark.slow

DELAYED = {
    "name": "later",
    "dag": {
        "nodes": [
            {"id": "nap", "handler": "delay", "config": {"seconds": 60}},
            {"id": "after", "handler": "noop", "dependencies": ["nap"]},
        ]
    },
}


def _owned_run(tmp_path: Path, spec: dict[str, Any]) -> tuple[subprocess.Popen[str], Path]:
    db = tmp_path / "two.db"
    proc = subprocess.Popen(
        [*CLI, "run", _write(tmp_path, spec["name"], spec), "--db", str(db), "-q", "--json"],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, db


def _finish(proc: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    try:
        out, errors = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, errors = proc.communicate()  # reaped, its pipes closed: no stray process
    return proc.returncode, out, errors


def test_cancel_from_another_terminal_while_run_drives_it(tmp_path: Path) -> None:
    proc, db = _owned_run(tmp_path, DELAYED)
    (execution_id,) = _until(lambda: [e for e, row in _executions(db).items() if row[1]])
    _until(lambda: _executions(db)[execution_id][0] == "waiting")
    cancelled = cli("cancel", execution_id, "--db", str(db))
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancelled {execution_id}" in cancelled.stdout
    assert _executions(db)[execution_id][0] == "cancelled"
    code, out, errors = _finish(proc)  # the run that drove it reports the cancel and ends
    assert code == 1, errors
    assert json.loads(out)["status"].lower() == "cancelled"


def test_pause_and_resume_from_another_terminal_while_run_drives_it(tmp_path: Path) -> None:
    log = tmp_path / "effects.log"
    # The pause must come while `work` runs: long enough for a second command line to start
    # on a loaded machine.
    spec = _slow("slow", 4.0, log)
    work = spec["dag"]["nodes"][0]
    spec["dag"]["nodes"].append({**work, "id": "more", "dependencies": ["work"]})
    proc, db = _owned_run(tmp_path, spec)
    try:
        _until(lambda: log.exists() and "start work" in log.read_text())
        (execution_id,) = _executions(db)
        paused = cli("pause", execution_id, "--db", str(db))
        assert paused.returncode == 0, paused.stderr
        assert _executions(db)[execution_id][0] == "paused"
        _until(lambda: "end work" in log.read_text())
        assert proc.poll() is None  # still owns it, paused
        resumed = cli("resume", execution_id, "--db", str(db), "--json")
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"].lower() == "completed"
        assert "start more" in log.read_text()
    except BaseException:
        _finish(proc, timeout=0)
        raise
    code, out, errors = _finish(proc)
    assert code == 0, errors
    assert json.loads(out)["status"].lower() == "completed"


def test_requests_another_process_would_refuse_are_refused_here_at_once(tmp_path: Path) -> None:
    proc, db = _owned_run(tmp_path, DELAYED)
    try:
        (execution_id,) = _until(lambda: [e for e, row in _executions(db).items() if row[1]])
        _until(lambda: _executions(db)[execution_id][0] == "waiting")
        not_paused = cli("resume", execution_id, "--db", str(db))
        assert not_paused.returncode == 2 and "not paused" in not_paused.stderr
        no_decision = cli("approve", execution_id, "nap", "--db", str(db))
        assert no_decision.returncode == 2, no_decision.stderr
        assert "not waiting for a decision" in " ".join(no_decision.stderr.split())
        for _ in range(2):  # pausing a paused execution changes nothing, as in one process
            paused = cli("pause", execution_id, "--db", str(db))
            assert paused.returncode == 0, paused.stderr
        assert _executions(db)[execution_id][0] == "paused"
    finally:
        proc.send_signal(signal.SIGTERM)
        _finish(proc)


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_decide_with_db_while_an_embedded_server_drives_it(tmp_path: Path, verb: str) -> None:
    db = tmp_path / "served.db"
    server = Server(tmp_path, db)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            submitted = client.post("/v1/workflow", json=CHILD_APPROVAL)
            assert submitted.status_code < 300, submitted.text
            execution_id = submitted.json()["execution_id"]
            triggered = client.post(f"/v1/workflow/trigger/{execution_id}", json={})
            assert triggered.status_code < 300, triggered.text
        _until(lambda: _executions(db)[execution_id][0] == "waiting")
        decided = cli(verb, execution_id, "ask", "--by", "ada", "--db", str(db), "--json")
        expected = "completed" if verb == "approve" else "failed"
        assert decided.returncode == (0 if verb == "approve" else 1), decided.stderr
        assert json.loads(decided.stdout)["status"].lower() == expected
        assert _executions(db)[execution_id][0] == expected
        owner = _executions(db)[execution_id][1]
        assert owner is None  # final: the server's claim is cleared
    finally:
        assert server.stop() == 0, server.log.read_text()


def test_cancel_with_db_while_an_embedded_server_drives_it(tmp_path: Path) -> None:
    db = tmp_path / "served.db"
    server = Server(tmp_path, db)
    try:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            execution_id = client.post("/v1/workflow", json=DELAYED).json()["execution_id"]
            client.post(f"/v1/workflow/trigger/{execution_id}", json={})
        _until(lambda: _executions(db)[execution_id][0] == "waiting")
        cancelled = cli("cancel", execution_id, "--db", str(db))
        assert cancelled.returncode == 0, cancelled.stderr
        assert _executions(db)[execution_id][0] == "cancelled"
    finally:
        assert server.stop() == 0, server.log.read_text()
