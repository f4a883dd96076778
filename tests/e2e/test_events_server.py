"""Events through real processes: ``orchestrion serve`` under uvicorn taking POST /v1/events,
the sync client, ``orchestrion emit --server`` and ``orchestrion emit`` on a local database,
and a follower started by the end of the workflow the event started."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server, until

from orchestrion.client import Client

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
LISTENER = """\
name: on-policy
inputs:
  document: {type: string, required: true}
triggers:
  - type: event
    name: policy_update
    event_type: policy.updated
    filter: "payload.severity == 'high'"
    inputs:
      document: "{{ payload.doc }}"
dag:
  nodes:
    - id: read
      handler: noop
"""
FOLLOWER = """\
name: after-policy
triggers:
  - type: event
    event_type: workflow.completed
    source: on-policy
    inputs: {}
dag:
  nodes:
    - id: notify
      handler: noop
"""


def orchestrion(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=None
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("events-server")
    running = Server(folder, folder / "events.db")
    try:
        for text in (LISTENER, FOLLOWER):
            response = httpx.post(
                f"{running.url}/v1/workflow",
                content=text,
                headers={"Content-Type": "application/yaml"},
            )
            assert response.status_code == 201, response.text
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def started_by(server: Server, name: str) -> list[dict[str, Any]]:
    listed = httpx.get(f"{server.url}/v1/workflows", params={"workflow": name}).json()
    return [item for item in listed["items"] if item["status"] != "PENDING"]


def test_an_event_over_http_starts_the_listener_once_and_its_end_starts_the_follower(
    server: Server,
) -> None:
    body = {"id": "http-1", "severity": "high", "doc": "ict-risk.pdf"}
    first = httpx.post(f"{server.url}/v1/events/policy.updated", json=body)
    assert first.status_code == 202, first.text
    [started] = first.json()["executions"]
    with httpx.Client(base_url=server.url) as client:
        detail = until(client, started["execution_id"], "COMPLETED")
    assert detail["inputs"] == {"document": "ict-risk.pdf"}
    assert detail["correlation_id"] == "http-1"
    again = httpx.post(f"{server.url}/v1/events/policy.updated", json=body)
    assert [e["execution_id"] for e in again.json()["executions"]] == [started["execution_id"]]
    deadline = time.monotonic() + 30
    while not (followers := started_by(server, "after-policy")):
        assert time.monotonic() < deadline, "no follower started"
        time.sleep(0.1)
    [follower] = followers
    shown = httpx.get(f"{server.url}/v1/workflows/{follower['execution_id']}").json()
    assert shown["correlation_id"] == started["execution_id"]
    unknown = httpx.post(f"{server.url}/v1/events/nobody.listens", json={})
    assert unknown.status_code == 202 and unknown.json()["executions"] == []


def test_the_client_and_the_cli_send_events_to_the_server(server: Server, tmp_path: Path) -> None:
    with Client(server.url) as client:
        answer = client.emit("policy.updated", {"severity": "high", "doc": "a"}, event_id="c-1")
        assert [e.workflow for e in answer.executions] == ["on-policy"]
    sent = orchestrion(
        "emit", "policy.updated", "--data", '{"severity": "high", "doc": "b"}',
        "--id", "cli-1", "--server", server.url, "--json", cwd=tmp_path,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stderr
    body = json.loads(sent.stdout)
    assert body["event_id"] == "cli-1" and body["executions"][0]["workflow"] == "on-policy"
    filtered = orchestrion(
        "emit", "policy.updated", "--data", '{"severity": "low"}', "--server", server.url,
        cwd=tmp_path,
    )  # fmt: skip
    assert filtered.returncode == 0, filtered.stderr
    assert "skipped on-policy (filter)" in filtered.stdout
    bad = orchestrion(
        "emit", "policy.updated", "--data", "[1]", "--server", server.url, cwd=tmp_path
    )
    assert bad.returncode == 2 and "JSON object" in bad.stderr


def test_emit_on_a_local_database_runs_what_the_event_starts(tmp_path: Path) -> None:
    (tmp_path / "listener.yaml").write_text(LISTENER)
    db = str(tmp_path / "local.db")
    args = ["emit", "policy.updated", "--data", '{"severity": "high", "doc": "x"}']
    sent = orchestrion(
        *args, "--id", "local-1", "--submit", "listener.yaml", "--db", db, "--json", cwd=tmp_path
    )
    assert sent.returncode == 0, sent.stderr
    [started] = json.loads(sent.stdout)["executions"]
    assert started["status"] == "COMPLETED" and started["workflow"] == "on-policy"
    again = orchestrion(*args, "--id", "local-1", "--db", db, "--json", cwd=tmp_path)
    assert json.loads(again.stdout)["executions"][0]["execution_id"] == started["execution_id"]
    refused = orchestrion("emit", "bad type", "--db", db, cwd=tmp_path)
    assert refused.returncode == 2 and "event type" in refused.stderr


GATED = """\
name: gated-policy
triggers:
  - {type: event, name: on_policy, event_type: policy.gated}
dag:
  nodes:
    - {id: gate, handler: approval, config: {message: "ok?"}}
"""


def test_a_reserved_event_type_is_invalid_input_in_both_modes(
    server: Server, tmp_path: Path
) -> None:
    answer = httpx.post(f"{server.url}/v1/events/workflow.completed", json={})
    assert answer.status_code == 422, answer.text  # not 403: no key may send it
    assert answer.json()["type"].endswith("reserved-event")
    db = str(tmp_path / "local.db")
    for where in (["--server", server.url], ["--db", db]):
        refused = orchestrion("emit", "workflow.completed", "--data", "{}", *where, cwd=tmp_path)
        assert refused.returncode == 2, (where, refused.stderr)
        assert "fired by the engine only" in refused.stderr, refused.stderr
        assert "API key" not in refused.stderr


def test_emit_exits_4_when_what_it_started_waits_for_a_person(tmp_path: Path) -> None:
    (tmp_path / "gated.yaml").write_text(GATED)
    db = str(tmp_path / "local.db")
    sent = orchestrion(
        "emit", "policy.gated", "--submit", "gated.yaml", "--db", db, "--json", cwd=tmp_path
    )
    assert sent.returncode == 4, (sent.stdout, sent.stderr)
    assert json.loads(sent.stdout)["executions"][0]["status"] == "WAITING"
