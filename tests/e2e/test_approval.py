"""Approvals as people meet them: the CLI hands over and resumes, the API decides, and a
waiting approval survives a kill -9 of the server."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_api_server import Server, until

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]

FLOW = {
    "name": "release",
    "dag": {
        "nodes": [
            {"id": "build", "handler": "noop", "config": {"value": "v1.2.3"}},
            {
                "id": "sign_off",
                "handler": "approval",
                "dependencies": ["build"],
                "config": {"message": "ship {{ build.output }}?"},
            },
            {
                "id": "ship",
                "handler": "noop",
                "dependencies": ["sign_off"],
                "config": {"value": "shipped by {{ sign_off.output.decided_by }}"},
            },
        ]
    },
}


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def test_cli_run_hands_over_at_an_approval_and_approve_finishes_it(tmp_path: Path) -> None:
    flow = tmp_path / "release.json"
    flow.write_text(json.dumps(FLOW))
    db = str(tmp_path / "r.db")
    waiting = cli("run", str(flow), "--db", db, "--json")
    assert waiting.returncode == 4, waiting.stderr
    data = json.loads(waiting.stdout)
    assert data["status"] == "WAITING"
    assert f"orchestrion approve {data['execution_id']} sign_off" in waiting.stderr

    done = cli("approve", data["execution_id"], "sign_off", "--by", "ada", "-m", "go",
               "--db", db, "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["nodes"]["ship"]["output"] == "shipped by ada"
    assert result["nodes"]["sign_off"]["output"]["comment"] == "go"


def test_cli_reject_fails_the_execution(tmp_path: Path) -> None:
    flow = tmp_path / "release.json"
    flow.write_text(json.dumps(FLOW))
    db = str(tmp_path / "r.db")
    execution_id = json.loads(cli("run", str(flow), "--db", db, "--json").stdout)["execution_id"]
    rejected = cli("reject", execution_id, "sign_off", "--by", "bob", "--db", db, "--json")
    assert rejected.returncode == 1
    assert json.loads(rejected.stdout)["nodes"]["sign_off"]["error"]["message"] == (
        "rejected by bob"
    )
    again = cli("approve", execution_id, "sign_off", "--db", db)
    assert again.returncode == 2 and "cannot approve" in again.stderr


def test_a_waiting_approval_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    db = tmp_path / "server.db"
    first = Server(tmp_path, db)
    with httpx.Client(base_url=first.url, timeout=10) as client:
        submitted = client.post("/v1/workflow", json=FLOW).json()
        execution_id = submitted["execution_id"]
        client.post(f"/v1/workflow/trigger/{execution_id}", json={})
        until(client, execution_id, "WAITING")
    first.stop(signal.SIGKILL)

    second = Server(tmp_path, db)
    try:
        with httpx.Client(base_url=second.url, timeout=10) as client:
            answer = client.post(
                f"/v1/workflows/{execution_id}/nodes/sign_off/approve",
                json={"by": "carol", "comment": "after the crash"},
                headers={"X-Client-ID": "release-bot"},
            )
            assert answer.status_code == 202, answer.text
            assert answer.json()["approved"] is True
            body = until(client, execution_id, "COMPLETED")
            assert body["nodes"]["ship"]["output"] == "shipped by carol"
            missing = client.post(f"/v1/workflows/{execution_id}/nodes/ship/approve", json={})
            assert missing.status_code == 409
            assert missing.headers["content-type"].startswith("application/problem+json")
    finally:
        assert second.stop() == 0


def test_python_client_approves_and_rejects(tmp_path: Path) -> None:
    from orchestrion.client import Client, Conflict
    from orchestrion.core.states import ExecutionStatus

    server = Server(tmp_path, tmp_path / "client.db")
    try:
        with Client(server.url) as client:
            approved = client.submit(FLOW)
            client.trigger(approved.execution_id)
            rejected = client.submit(FLOW)
            client.trigger(rejected.execution_id)
            for execution in (approved, rejected):
                with httpx.Client(base_url=server.url) as raw:
                    until(raw, execution.execution_id, "WAITING")
            client.approve(approved.execution_id, "sign_off", by="dan")
            client.reject(rejected.execution_id, "sign_off", by="eve", comment="no")
            assert client.wait(approved.execution_id, timeout=10).status is (
                ExecutionStatus.COMPLETED
            )
            assert client.wait(rejected.execution_id, timeout=10).status is ExecutionStatus.FAILED
            with pytest.raises(Conflict):
                client.approve(approved.execution_id, "sign_off")
    finally:
        assert server.stop() == 0


def test_rerun_from_node_and_child_links_over_the_api(tmp_path: Path) -> None:
    from orchestrion.client import Client

    child = {"name": "child", "dag": {"nodes": [{"id": "x", "handler": "noop"}]}}
    parent = {
        "name": "parent",
        "dag": {
            "nodes": [
                {"id": "call", "handler": "workflow", "config": {"workflow": "child"}},
                {"id": "after", "handler": "noop", "dependencies": ["call"]},
            ]
        },
    }
    server = Server(tmp_path, tmp_path / "links.db")
    try:
        with Client(server.url) as client:
            client.run(child, timeout=10)
            done = client.run(parent, timeout=10)
            child_id = done.nodes["call"].output["child_execution_id"]
            with httpx.Client(base_url=server.url) as raw:
                body = raw.get(f"/v1/workflows/{child_id}").json()
            assert body["parent_execution_id"] == done.execution_id
            assert body["parent_node_id"] == "call"
            client.retry(done.execution_id, from_node="after")
            again = client.wait(done.execution_id, timeout=10)
            assert again.nodes["after"].attempt == 2 and again.nodes["call"].attempt == 1
    finally:
        assert server.stop() == 0
