"""Node logs through real processes: ``orchestrion serve`` under uvicorn running a python node
that logs slowly, ``orchestrion logs --follow`` against it printing the node's lines while it
still runs, the sync client following them, and ``orchestrion logs`` on the server's SQLite
file from another process."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from python_steps import allow_steps, steps_env
from test_api_server import Server

from orchestrion.client import Client

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
STEPS = """\
import logging
import time

log = logging.getLogger("steps")


def slow(lines: int, pause: float) -> int:
    for i in range(lines):
        log.info("step %d of %d, mail ada@example.com", i, lines)
        time.sleep(pause)
    return lines


def hostile() -> None:
    log.warning("\\x1b[2J\\x1b]0;pwned\\x07cleared\\n12:00:00.000 INFO    steps: forged\\u202e")
    raise ValueError("bad \\x1b]52;c;cHduZWQ=\\x07 clipboard \\x9b31m")
"""
LINES = 6


def workflow(pause: float) -> dict[str, Any]:
    return {
        "name": "slow-logger",
        "dag": {
            "nodes": [
                {
                    "id": "slow",
                    "handler": "python",
                    "config": {
                        "function": "node_log_steps.slow",
                        "params": {"lines": LINES, "pause": pause},
                    },
                },
                {"id": "after", "handler": "noop", "dependencies": ["slow"]},
            ]
        },
    }


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("node-logs")
    allow_steps(folder, "node_log_steps", STEPS)
    return folder


@pytest.fixture(scope="module")
def server(folder: Path) -> Iterator[Server]:
    env = {**steps_env(folder), "ORCHESTRION_SSE_POLL": "0.5"}
    running = Server(folder, folder / "served.db", env)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def start(server: Server, pause: float) -> str:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        submitted = client.post("/v1/workflow", json=workflow(pause))
        assert submitted.status_code == 201, submitted.text
        execution_id = str(submitted.json()["execution_id"])
        triggered = client.post(f"/v1/workflow/trigger/{execution_id}", json={})
        assert triggered.status_code == 202, triggered.text
    return execution_id


def status(server: Server, execution_id: str) -> str:
    return str(httpx.get(f"{server.url}/v1/workflows/{execution_id}", timeout=10).json()["status"])


def test_logs_follow_prints_a_running_nodes_lines_then_ends(server: Server, folder: Path) -> None:
    execution_id = start(server, pause=0.5)
    command = [*CLI, "logs", execution_id, "slow", "--follow", "--server", server.url, "--json"]
    errors = folder / "follower.err"
    with errors.open("w") as err_file:
        follower = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=err_file, text=True, cwd=folder
        )
    try:
        assert follower.stdout is not None
        first = json.loads(follower.stdout.readline())
        # The first line is printed while the node is still at work (it logs for 3 s).
        assert status(server, execution_id) == "RUNNING"
        assert first["message"] == f"step 0 of {LINES}, mail [email]"
        assert (first["node_id"], first["attempt"], first["level"]) == ("slow", 1, "INFO")
        rest = follower.stdout.read()  # the same buffered reader: what it holds is kept
        assert follower.wait(60) == 0, errors.read_text()
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.wait()
        follower.stdout.close()
    lines = [first] + [json.loads(line) for line in rest.splitlines()]
    assert [line["message"] for line in lines] == [
        f"step {i} of {LINES}, mail [email]" for i in range(LINES)
    ]
    assert status(server, execution_id) == "COMPLETED"  # the stream ended with the execution

    # The same lines, as text, from the server and from its database in another process.
    served = subprocess.run(
        [*CLI, "logs", execution_id, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )
    assert served.returncode == 0, served.stderr
    assert served.stdout.count("slow#1 INFO") == LINES
    assert "steps: step 5 of 6, mail [email]" in served.stdout
    local = subprocess.run(
        [*CLI, "logs", execution_id[:8], "slow", "--attempt", "1", "--db", "served.db"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )
    assert local.returncode == 0, local.stderr
    assert local.stdout.count("INFO") == LINES
    missing = subprocess.run(
        [*CLI, "logs", "no-such-execution", "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
    )
    assert missing.returncode != 0 and "not found" in missing.stderr.lower()


def test_the_client_follows_a_running_nodes_lines(server: Server) -> None:
    execution_id = start(server, pause=0.3)
    seen: list[tuple[str, float]] = []
    with Client(server.url) as client:
        for line in client.follow_logs(execution_id, "slow"):
            seen.append((line.message, time.monotonic()))
            if len(seen) == 1:
                assert client.status(execution_id).status.value == "running"
        page = client.logs(execution_id, attempt=1, limit=2)
        assert [line.message for line in page.items] == [m for m, _ in seen[:2]]
        after = client.logs(execution_id, after=page.next_after)
        assert len(page.items) + len(after.items) == LINES
    assert [message for message, _ in seen] == [
        f"step {i} of {LINES}, mail [email]" for i in range(LINES)
    ]
    # Live: the lines came over the node's run time, not all at once at its end.
    assert seen[-1][1] - seen[0][1] > 0.6


@pytest.mark.parametrize(
    "command",
    [["logs", "{id}"], ["logs", "{id}", "hostile"], ["events", "{id}"], ["status", "{id}"]],
    ids=["logs", "logs-node", "events", "status"],
)
def test_the_cli_shows_control_characters_of_a_node_instead_of_obeying_them(
    server: Server, command: list[str]
) -> None:
    flow = {
        "name": "hostile-logger",
        "dag": {
            "nodes": [
                {
                    "id": "hostile",
                    "handler": "python",
                    "retry": {"max_attempts": 1},
                    "config": {"function": "node_log_steps.hostile"},
                }
            ]
        },
    }
    with httpx.Client(base_url=server.url, timeout=10) as client:
        submitted = client.post("/v1/workflow", json=flow)
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]
        assert client.post(f"/v1/workflow/trigger/{execution_id}", json={}).status_code == 202
    deadline = time.monotonic() + 30
    while status(server, execution_id) not in ("FAILED", "COMPLETED"):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    args = [part.format(id=execution_id) for part in command]
    shown = subprocess.run(
        [*CLI, *args, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "400", "PATH": "/usr/bin:/bin", "TERM": "xterm", "FORCE_COLOR": "1"},
    )
    out = shown.stdout + shown.stderr
    assert shown.returncode in (0, 1), out
    raw = [c for c in out if c in "\x07\x9b\u202e"]
    assert raw == [], repr(out)
    # every ESC left is rich's own styling (ESC [ ... m), none opens a sequence of the node's
    assert "\x1b" not in re.sub("\x1b\\[[0-9;]*m", "", out), repr(out)
    if command[0] == "logs":
        assert "\\x1b[2J" in out and "\\x1b]0;pwned" in out and "\\u202e" in out
        assert not any(line.startswith("12:00:00.000") for line in out.splitlines())
    else:
        assert "\\x1b]52;c;" in out or "\\x9b" in out, out
