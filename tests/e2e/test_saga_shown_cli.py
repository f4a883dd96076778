"""A saga as the command line shows it, locally and with ``--server``: a compensation that
failed is drawn as a failure (``✗ compensation_failed``), never with a completed node's check
mark, in ``run``'s progress (lines piped, live table on a terminal), ``status`` (terminal and
piped) and ``events``; a cancel that comes while the execution compensates is recorded, said
by the cancel's answer and shown in the execution's error and journal, the compensation
running to its end. Real processes on a SQLite file; built-in functions only."""

from __future__ import annotations

import base64
import errno
import json
import os
import pty
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from test_api_server import Server
from test_cli import CLI, orchestrion

pytestmark = pytest.mark.slow

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def flow(undo_seconds: float) -> str:
    """a, then b, then d, which fails: b's compensation fails, then a's runs (and sleeps)."""
    return f"""\
name: saga-shown
dag:
  nodes:
    - id: a
      handler: noop
      compensate:
        handler: python
        config: {{function: sleep, params: {{seconds: {undo_seconds}}}}}
    - id: b
      handler: noop
      dependencies: [a]
      compensate: {{handler: python, config: {{function: fail, params: {{message: undo b broke}}}}}}
    - id: d
      handler: python
      dependencies: [b]
      retry: {{max_attempts: 1}}
      config: {{function: fail, params: {{message: d went wrong}}}}
"""


def _file(tmp_path: Path, undo_seconds: float) -> Path:
    path = tmp_path / "saga.yaml"
    path.write_text(flow(undo_seconds))
    return path


def _on_terminal(args: list[str], cwd: Path, timeout: float = 60) -> tuple[int, str]:
    """``orchestrion args`` with stdout and stderr on one terminal: its code and what it
    showed (colours taken off, every frame a live display drew included)."""
    leader, follower = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update({"COLUMNS": "120", "LINES": "40"})
    env.pop("NO_COLOR", None)
    process = subprocess.Popen([*CLI, *args], stdout=follower, stderr=follower, cwd=cwd, env=env)
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:  # EIO: the process closed the terminal
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    code = process.wait(timeout)
    return code, _ANSI.sub("", shown.decode(errors="replace")).replace("\r", "\n")


def _row(text: str, node: str) -> list[str]:
    [row] = [line.split() for line in text.splitlines() if line.split()[:1] == [node]]
    return row


def _assert_failed_compensation_shown(exec_id: str, where: list[str], cwd: Path) -> None:
    """``status`` and ``events``, piped and (local only) on a terminal."""
    status = orchestrion("status", exec_id, *where, cwd=cwd)
    assert status.returncode == 0, status.stderr
    assert _row(status.stdout, "b")[:2] == ["b", "compensation_failed"], status.stdout
    assert _row(status.stdout, "a")[:2] == ["a", "compensated"], status.stdout
    assert "undo b broke" in " ".join(_row(status.stdout, "b"))
    events = orchestrion("events", exec_id, *where, cwd=cwd)
    [line] = [ln for ln in events.stdout.splitlines() if "node.compensation_failed" in ln]
    assert "compensation failed: " in line and "undo b broke" in line, events.stdout


def test_a_failed_compensation_is_shown_failed_locally(tmp_path: Path) -> None:
    path = _file(tmp_path, 0.6)
    db = str(tmp_path / "s.db")
    ran = orchestrion("run", str(path), "--db", db, cwd=tmp_path)
    assert ran.returncode == 1, ran.stderr
    # Progress lines (stderr not a terminal): the failed compensation with a cross.
    [line] = [ln for ln in ran.stderr.splitlines() if "compensation_failed" in ln]
    assert re.search(r"✗ b +compensation_failed +.*undo b broke", line), ran.stderr
    assert "✓" not in line
    assert re.search(r"↺ a +compensated", ran.stderr), ran.stderr
    exec_id = json.loads(orchestrion("list", "--db", db, "--json", cwd=tmp_path).stdout)[0][
        "execution_id"
    ]
    _assert_failed_compensation_shown(exec_id, ["--db", db], tmp_path)

    # On a terminal: the status table, and the live table of a run as it compensates.
    code, shown = _on_terminal(["status", exec_id, "--db", db], tmp_path)
    assert code == 0, shown
    assert re.search(r"^b +✗ compensation_failed +1 ", shown, re.MULTILINE), shown
    code, shown = _on_terminal(["run", str(path), "--db", db], tmp_path)
    assert code == 1, shown
    # a's compensation sleeps: the live table draws b's row after its compensation failed.
    assert re.search(r"✗ +b +compensation_failed +undo b broke", shown), shown
    assert not re.search(r"✓ +b +(completed|compensation)[^\n]*undo b broke", shown), shown


def _compensating(client: httpx.Client, exec_id: str) -> None:
    """Until b's undo failed: a's (which sleeps) runs now."""
    deadline = time.monotonic() + 30
    while client.get(f"/v1/workflows/{exec_id}").json()["nodes"]["b"]["compensation"] is None:
        assert time.monotonic() < deadline, "the execution never compensated"
        time.sleep(0.05)


def _assert_cancel_recorded(exec_id: str, where: list[str], cwd: Path, reason: str) -> None:
    """Once the run ended: failed as it would have, a compensated, the cancel in the
    execution's error and its journal, and in ``status``'s error line."""
    data = json.loads(orchestrion("status", exec_id, *where, "--json", cwd=cwd).stdout)
    assert data["status"] == "FAILED", data
    assert data["nodes"]["a"]["state"] == "COMPENSATED"  # not interrupted
    assert data["nodes"]["b"]["compensation"] == "failed"
    error = data["error"]
    assert error["category"] == "node_failed" and error["compensation_failed"] == ["b"]
    assert error["cancel_requested"]["reason"] == reason
    assert "cancel requested while compensating" in error["message"]
    rows = json.loads(orchestrion("events", exec_id, *where, "--json", cwd=cwd).stdout)
    kinds = [row["type"] for row in rows]
    asked = kinds.index("execution.cancel_requested")
    assert kinds.index("execution.compensating") < asked < kinds.index("execution.failed")
    assert rows[asked]["data"]["reason"] == reason
    assert "execution.cancelled" not in kinds
    table = orchestrion("status", exec_id, *where, cwd=cwd).stdout
    [line] = [ln for ln in table.splitlines() if ln.startswith("error: ")]
    assert "cancel requested while compensating" in line, table


def test_a_cancel_while_compensating_is_recorded_and_shown_locally(tmp_path: Path) -> None:
    path = _file(tmp_path, 8)
    db = str(tmp_path / "c.db")
    audit = {"ORCHESTRION_AUDIT_KEYS": "k1:" + base64.b64encode(b"K" * 32).decode()}
    with subprocess.Popen(
        [*CLI, "run", str(path), "--db", db],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
        env={**os.environ, **audit},
    ) as running:
        assert running.stderr is not None
        for line in running.stderr:  # its progress, a line a node event
            if "compensation_failed" in line:
                break  # b's undo failed: a's (which sleeps) runs now
        listed = orchestrion("list", "--db", db, "--json", cwd=tmp_path)
        exec_id = json.loads(listed.stdout)[0]["execution_id"]
        # Another process asks: the one running it records the cancel and says so.
        cancel = orchestrion("cancel", exec_id, "--db", db, cwd=tmp_path, env=audit)
        out, err = running.communicate(timeout=60)
    assert cancel.returncode == 0, cancel.stderr
    assert cancel.stdout.startswith(f"cancel of {exec_id} recorded, not carried out"), cancel
    assert "the compensation runs to its end" in cancel.stdout
    assert running.returncode == 1, err
    assert "cancel requested while compensating" in err  # the run's progress says it
    assert f"execution {exec_id} failed" in out
    _assert_cancel_recorded(exec_id, ["--db", db], tmp_path, "cancelled by request")
    # The audit trail has the request (asked of the process running it) and the record.
    trail = orchestrion(
        "audit", "list", "--db", db, "--execution", exec_id, "--json", cwd=tmp_path, env=audit
    )
    actions = [row["action"] for row in json.loads(trail.stdout)]
    assert "control.requested" in actions and "execution.cancel_requested" in actions, actions
    assert "execution.cancelled" not in actions
    # Once it ended, a cancel is refused as for any ended execution.
    again = orchestrion("cancel", exec_id, "--db", db, cwd=tmp_path)
    assert again.returncode != 0 and "it is failed" in again.stderr


def test_failed_compensation_and_cancel_while_compensating_with_server(tmp_path: Path) -> None:
    path = _file(tmp_path, 8)
    server = Server(tmp_path, tmp_path / "srv.db", {"ORCHESTRION_API_KEYS": "op-key:operator"})
    where = ["--server", server.url, "--api-key", "op-key"]
    headers = {"Authorization": "Bearer op-key"}
    try:
        # The run's progress comes from the server's event stream.
        ran = orchestrion("run", str(path), *where, cwd=tmp_path)
        assert ran.returncode == 1, ran.stderr
        [line] = [ln for ln in ran.stderr.splitlines() if "compensation_failed" in ln]
        assert re.search(r"✗ b +compensation_failed", line) and "✓" not in line, ran.stderr
        first = json.loads(orchestrion("list", *where, "--json", cwd=tmp_path).stdout)[0]
        _assert_failed_compensation_shown(first["execution_id"], where, tmp_path)

        # A cancel through the API while it compensates: the answer says what happens.
        with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
            submitted = client.post(
                "/v1/workflow", content=flow(8), headers={"Content-Type": "application/yaml"}
            )
            assert submitted.status_code == 201, submitted.text
            exec_id = submitted.json()["execution_id"]
            started = client.post(f"/v1/workflow/trigger/{exec_id}")
            assert started.status_code == 202, started.text
            _compensating(client, exec_id)
            answer = client.delete(f"/v1/workflows/{exec_id}")
            assert answer.status_code == 202, answer.text
            body = answer.json()
            assert body["status"] == "RUNNING", body
            assert body["message"].startswith("Cancel recorded, not carried out"), body
            assert "compensating" in body["message"] and "ends FAILED" in body["message"]
            # The CLI's cancel says the same (a second request: recorded too).
            cancel = orchestrion("cancel", exec_id, *where, cwd=tmp_path)
            assert cancel.returncode == 0, cancel.stderr
            assert cancel.stdout.startswith(f"cancel of {exec_id} recorded"), cancel.stdout
            deadline = time.monotonic() + 30
            while client.get(f"/v1/workflows/{exec_id}").json()["status"] != "FAILED":
                assert time.monotonic() < deadline, "the compensation never ended"
                time.sleep(0.1)
        _assert_cancel_recorded(exec_id, where, tmp_path, "cancelled through the API")
    finally:
        assert server.stop() == 0, server.log.read_text()
