"""Every edge between the processes of ``orchestrion serve --workers 2``, through real
connections pinned to one process or the other: an execution driven by one is read,
approved, cancelled, paused and resumed, and its events and log lines streamed (on its own
stream and on the stream of every execution), through the other; one idempotency key sent
to both at once makes one execution; a schedule fires once per tick; a session made in one
is honoured (and its sign-out too) in the other; the audit trail written by both stays one
valid chain."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from python_steps import allow_steps, steps_env
from workers_server import CLI, Pinned, WorkersServer, sse_events

from audit_helpers import AUDIT_ENV

pytestmark = pytest.mark.slow

STEPS = """\
import logging
import time

log = logging.getLogger("steps")


def slow(lines: int, pause: float) -> int:
    for i in range(lines):
        log.info("step %d of %d", i, lines)
        time.sleep(pause)
    return lines
"""
LINES = 5
ADMIN, OPERATOR = "workers-admin-key", "workers-operator-key"
APPROVAL = {
    "name": "release",
    "dag": {
        "nodes": [
            {"id": "sign_off", "handler": "approval", "config": {"message": "ship?"}},
            {"id": "ship", "handler": "noop", "dependencies": ["sign_off"]},
        ]
    },
}
SLOW = {
    "name": "slow-logger",
    "dag": {
        "nodes": [
            {
                "id": "slow",
                "handler": "python",
                "config": {
                    "function": "worker_steps.slow",
                    "params": {"lines": LINES, "pause": 0.4},
                },
            },
            {"id": "after", "handler": "noop", "dependencies": ["slow"]},
        ]
    },
}
DELAYED = {
    "name": "nap",
    "dag": {"nodes": [{"id": "nap", "handler": "delay", "config": {"seconds": 60}}]},
}
SCHEDULED = """\
name: heartbeat
triggers:
  - type: scheduled
    name: every_second
    schedule: "* * * * * *"
    catchup: all
dag:
  nodes:
    - id: beat
      handler: noop
"""


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("workers")
    allow_steps(folder, "worker_steps", STEPS)
    return folder


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[WorkersServer]:
    env = {
        **AUDIT_ENV,
        **steps_env(folder),
        "ORCHESTRION_API_KEYS": f"{ADMIN}:admin,{OPERATOR}:operator",
        # A stream that learnt of the other process's commits only by polling would wait
        # this long: the streams below must end well before (sse_events waits 30 s).
        "ORCHESTRION_SSE_POLL": "60",
        "ORCHESTRION_SCHEDULER_INTERVAL": "0.2",
        "ORCHESTRION_SCHEDULER_LEASE_SECONDS": "2",
    }
    running = WorkersServer(folder, folder / "served.db", workers=2, env=env)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


@pytest.fixture
def pair(server: WorkersServer) -> Iterator[tuple[Pinned, Pinned]]:
    """A connection to each server process, as an operator."""
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    first, second = server.children()
    a, b = Pinned.to(server, first, auth), Pinned.to(server, second, auth)
    yield a, b
    a.close()
    b.close()


def status_of(through: Pinned, execution_id: str) -> str:
    status, body, _ = through.call("GET", f"/v1/workflows/{execution_id}")
    assert status == 200, body
    return str(body["status"])


def until_status(through: Pinned, execution_id: str, wanted: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while (found := status_of(through, execution_id)) != wanted:
        assert time.monotonic() < deadline, f"{execution_id} is {found}, not {wanted}"
        time.sleep(0.05)


def test_an_approval_driven_by_one_process_is_streamed_and_approved_through_the_other(
    server: WorkersServer, pair: tuple[Pinned, Pinned]
) -> None:
    a, b = pair
    execution_id = a.start(APPROVAL)
    until_status(b, execution_id, "WAITING")
    stream = b.stream(f"/v1/workflows/{execution_id}/events/stream")
    approver = Pinned.to(server, b.pid, b.headers)
    path = f"/v1/workflows/{execution_id}/nodes/sign_off/approve"
    status, body, _ = approver.call("POST", path, {"comment": "ok"})
    approver.close()
    assert status in (200, 202), body
    # The approval went to the driving process through the journal; its commits reach this
    # stream in the other process.
    events = sse_events(stream, "execution.completed")
    types = [e["event"] for e in events]
    assert types[0] == "execution.started" and types[-1] == "execution.completed", types
    assert "node.completed" in types, types
    assert status_of(a, execution_id) == "COMPLETED"


def test_the_stream_of_every_execution_in_one_process_sees_those_the_other_drives(
    pair: tuple[Pinned, Pinned],
) -> None:
    a, b = pair
    stream = b.stream("/v1/events/stream")
    flow = {"name": "everywhere", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    execution_id = a.start(flow)
    seen: list[dict] = []
    while not any(
        e["event"] == "execution.completed" and e["data"]["execution_id"] == execution_id
        for e in seen
    ):
        seen += sse_events(stream, "execution.completed")
    assert any(e["data"]["execution_id"] == execution_id for e in seen), seen


def test_cancel_pause_and_resume_through_the_process_that_does_not_drive(
    pair: tuple[Pinned, Pinned],
) -> None:
    a, b = pair
    napping = a.start(DELAYED)
    until_status(b, napping, "WAITING")
    status, body, _ = b.call("DELETE", f"/v1/workflows/{napping}")
    assert status in (200, 202), body
    assert status_of(a, napping) == "CANCELLED"

    working = a.start(SLOW)
    until_status(b, working, "RUNNING")
    status, body, _ = b.call("POST", f"/v1/workflows/{working}/pause", {})
    assert status in (200, 202), body
    until_status(a, working, "PAUSED")
    status, body, _ = b.call("POST", f"/v1/workflows/{working}/resume", {})
    assert status in (200, 202), body
    until_status(a, working, "COMPLETED")


def test_log_lines_written_in_one_process_stream_through_the_other(
    pair: tuple[Pinned, Pinned],
) -> None:
    a, b = pair
    execution_id = a.start(SLOW)
    until_status(b, execution_id, "RUNNING")
    stream = b.stream(f"/v1/workflows/{execution_id}/nodes/slow/logs/stream")
    lines = [e["data"]["message"] for e in sse_events(stream, "", timeout=30)]
    assert lines == [f"step {i} of {LINES}" for i in range(LINES)]


def _race(pair: tuple[Pinned, Pinned], key: str) -> list[tuple[int, Any]]:
    """Submit with ``key`` through both processes at the same moment."""
    flow = {"name": "once", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    answers: list[tuple[int, Any]] = []
    gate = threading.Barrier(2)

    def submit(through: Pinned) -> None:
        gate.wait()
        status, body, _ = through.call("POST", "/v1/workflow", flow, {"Idempotency-Key": key})
        answers.append((status, body))

    threads = [threading.Thread(target=submit, args=(through,)) for through in pair]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return answers


def test_one_idempotency_key_sent_to_both_processes_at_once_makes_one_execution(
    pair: tuple[Pinned, Pinned],
) -> None:
    for attempt in range(10):
        answers = _race(pair, f"same-{attempt}-{time.monotonic_ns()}")
        assert len(answers) == 2 and {s for s, _ in answers} <= {200, 201}, answers
        assert answers[0][1]["execution_id"] == answers[1][1]["execution_id"], answers


def test_a_schedule_fires_once_per_tick_with_two_processes(
    server: WorkersServer, pair: tuple[Pinned, Pinned], folder: Path
) -> None:
    a, _ = pair
    status, body, _ = a.call(
        "POST", "/v1/workflow", SCHEDULED, {"Content-Type": "application/yaml"}
    )
    assert status == 201, body
    time.sleep(4)
    with sqlite3.connect(folder / "served.db") as conn:
        rows = conn.execute(
            "SELECT idempotency_key FROM executions WHERE idempotency_key LIKE 'schedule:%'"
        ).fetchall()
    ticks = Counter(key for (key,) in rows)
    assert len(ticks) >= 2, ticks
    assert set(ticks.values()) == {1}, ticks  # no tick fired by both processes


def test_a_session_made_in_one_process_works_and_ends_in_the_other(
    server: WorkersServer,
) -> None:
    first, second = server.children()
    a = Pinned.to(server, first, {"Authorization": f"Bearer {OPERATOR}"})
    status, body, headers = a.call("POST", "/v1/session")
    assert status in (200, 201), body
    token = body["csrf_token"]
    cookie = headers["set-cookie"].split(";", 1)[0]
    a.close()
    b = Pinned.to(server, second, {"Cookie": cookie})
    flow = {"name": "by-cookie", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    refused, _, _ = b.call("POST", "/v1/workflow", flow)
    assert refused == 403  # a state change with the cookie needs the session's CSRF token
    status, body, _ = b.call("POST", "/v1/workflow", flow, {"X-CSRF-Token": token})
    assert status == 201, body
    # Signed out through the first process: the second refuses the cookie from then on.
    a = Pinned.to(server, first, {"Cookie": cookie})
    status, body, _ = a.call("DELETE", "/v1/session", headers={"X-CSRF-Token": token})
    assert status in (200, 204), body
    a.close()
    deadline = time.monotonic() + 15
    while (found := b.call("GET", "/v1/workflows")[0]) != 401:
        assert time.monotonic() < deadline, found
        time.sleep(0.1)
    b.close()


def test_the_audit_trail_written_by_both_processes_is_one_valid_chain(
    server: WorkersServer, folder: Path
) -> None:
    first, second = server.children()
    auth = {"Authorization": f"Bearer {OPERATOR}"}
    flow = {"name": "audited", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}

    def submit(pid: int) -> None:
        through = Pinned.to(server, pid, auth)
        for _ in range(30):
            status, body, _ = through.call("POST", "/v1/workflow", flow)
            assert status == 201, body
        through.close()

    threads = [threading.Thread(target=submit, args=(pid,)) for pid in (first, second) * 2]
    for thread in threads:
        thread.start()
    # A control request too: journalled by the process asked, carried out by the other.
    a, b = Pinned.to(server, first, auth), Pinned.to(server, second, auth)
    napping = a.start(DELAYED)
    until_status(b, napping, "WAITING")
    assert b.call("DELETE", f"/v1/workflows/{napping}")[0] in (200, 202)
    a.close()
    b.close()
    for thread in threads:
        thread.join(120)
    admin = Pinned.to(server, second, {"Authorization": f"Bearer {ADMIN}"})
    status, verified, _ = admin.call("GET", "/v1/audit/verify")
    admin.close()
    assert status == 200 and verified["ok"] is True, verified
    assert verified["records"] >= 120
    env = {**os.environ, **AUDIT_ENV}
    checked = subprocess.run(
        [*CLI, "audit", "verify", "--db", str(folder / "served.db")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "audit trail ok" in checked.stdout
