"""``orchestrion run --server`` hands over at an approval as a local run does: exit 4 and the
command that decides it, the approvals of a child included (a real ``orchestrion serve``)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_api_server import Server
from test_handover_cli import CHILD_APPROVAL, PARENT

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, tmp_path / "server.db")
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("quiet", [True, False], ids=["json", "live-progress"])
def test_run_on_a_server_hands_over_at_an_approval(
    tmp_path: Path, server: Server, quiet: bool
) -> None:
    flow = tmp_path / "sign.json"
    flow.write_text(json.dumps(CHILD_APPROVAL))
    waiting = cli("run", str(flow), "--server", server.url, *(["--json"] if quiet else []))
    assert waiting.returncode == 4, waiting.stderr
    execution_id = _approve_lines(waiting)[0].split("orchestrion approve ")[1].split()[0]
    if quiet:
        assert json.loads(waiting.stdout)["execution_id"] == execution_id
    command = f"orchestrion approve {execution_id} ask --server {server.url}"
    assert command in waiting.stderr, waiting.stderr

    done = cli("approve", execution_id, "ask", "--by", "ada", "--server", server.url, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["nodes"]["signed"]["output"] == "by ada"


def _approve_lines(done: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in done.stderr.splitlines() if "orchestrion approve" in line]


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "live-progress"])
def test_run_on_a_server_hands_over_at_a_childs_approval(
    tmp_path: Path, server: Server, as_json: bool
) -> None:
    child, parent = tmp_path / "sign.json", tmp_path / "release.json"
    child.write_text(json.dumps(CHILD_APPROVAL))
    parent.write_text(json.dumps(PARENT))
    assert cli("run", str(child), "--server", server.url, "-q").returncode == 4  # stores it
    waiting = cli("run", str(parent), "--server", server.url, *(["--json"] if as_json else []))
    assert waiting.returncode == 4, waiting.stderr
    listed = json.loads(cli("list", "-w", "release", "--server", server.url, "--json").stdout)
    (parent_id,) = [row.get("id") or row.get("execution_id") for row in listed]
    if as_json:
        assert json.loads(waiting.stdout)["execution_id"] == parent_id
    found = _approve_lines(waiting)
    assert len(found) == 1, waiting.stderr
    child_id = found[0].split("orchestrion approve ")[1].split()[0]
    assert child_id != parent_id
    assert f"orchestrion approve {child_id} ask --server {server.url}" in found[0]

    assert cli("approve", child_id, "ask", "--server", server.url).returncode == 0
    deadline = time.monotonic() + 30
    while True:
        shown = cli("status", parent_id, "--server", server.url, "--json")
        if json.loads(shown.stdout)["status"].lower() == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert json.loads(shown.stdout)["status"].lower() == "completed", shown.stdout
