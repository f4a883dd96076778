"""The DORA example of reference 004 with its triggers live, through a real ``orchestrion
serve``: its ``policy.updated`` event starts it, its routing rules escalate to the compliance
officer and ask the CFO or the CRO (and nobody else) for an approval, and its success criteria
decide the outcome. Its two-hour alert is shown with the same example, the threshold lowered
to one second. Versions are listed, activated and deprecated through the client, which
records who did it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from test_api_server import CLI, REFERENCE, Server, until

from orchestrion.client import Client
from orchestrion.client.errors import Conflict, NotFound, Unauthorized

pytestmark = pytest.mark.slow

DORA = (REFERENCE / "dora-compliance-assessment.yaml").read_text(encoding="utf-8")
YAML = {"Content-Type": "application/yaml"}
KEYS = (
    "k-admin:admin:root,k-alice:operator:alice,k-bob:operator:bob,k-carol:operator:carol,"
    "k-fake:operator:cfo"  # bears the team's name, is no member of it
)
ALICE, CAROL = {"Authorization": "Bearer k-alice"}, {"Authorization": "Bearer k-carol"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("routing")
    env = {
        "ORCHESTRION_TEAMS_FILE": str(REFERENCE.parent / "teams.yaml"),
        "ORCHESTRION_API_KEYS": KEYS,
    }
    running = Server(folder, folder / "routing.db", env=env)
    try:
        yield running
    finally:
        running.stop()


def _journal(client: httpx.Client, execution_id: str, kind: str) -> list[dict[str, Any]]:
    events = client.get(f"/v1/workflows/{execution_id}/events", params={"limit": 500})
    return [e["data"] for e in events.json()["items"] if e["type"] == kind]


def _node(body: dict[str, Any], node: str) -> dict[str, Any]:
    return dict(body["nodes"][node])


def _waiting_for_approval(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body = client.get(f"/v1/workflows/{execution_id}").json()
        if _node(body, "routing-2")["state"] == "WAITING":
            return dict(body)
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_an_event_starts_dora_which_escalates_waits_for_cfo_or_cro_and_is_judged(
    server: Server,
) -> None:
    with httpx.Client(base_url=server.url, timeout=10, headers=ALICE) as client:
        submitted = client.post("/v1/workflow", content=DORA, headers=YAML)
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["warnings"] == []  # every lifecycle section is enforced
        sent = client.post("/v1/events/policy.updated", json={"id": "evt-q4", "documents": []})
        assert sent.status_code == 202, sent.text
        [started] = sent.json()["executions"]
        execution_id = started["execution_id"]
        body = _waiting_for_approval(client, execution_id)
        assert body["status"] == "WAITING"
        assert _node(body, "routing-1")["state"] == "COMPLETED"  # escalated
        assert _node(body, "implementation_planning")["state"] == "PENDING"  # gated
        notices = _journal(client, execution_id, "execution.notice")
        assert [(n["kind"], n["teams"]) for n in notices] == [
            ("escalation", ["compliance_officer"]),
            ("approval_required", ["cfo", "cro"]),
        ]
        approve = f"/v1/workflows/{execution_id}/nodes/routing-2/approve"
        refused = client.post(approve, json={"by": "cfo"}, headers=CAROL)  # a name is no proof
        assert refused.status_code == 403, refused.text
        assert "may be decided only by cfo, cro" in refused.json()["detail"]
        named = client.post(approve, json={}, headers={"Authorization": "Bearer k-fake"})
        assert named.status_code == 403, named.text  # a key named 'cfo' is not the team
        approved = client.post(approve, json={"comment": "within budget"})
        assert approved.status_code == 202, approved.text
        done = until(client, execution_id, "COMPLETED", "FAILED")
    assert done["status"] == "FAILED"  # the required criterion decides
    assert done["error"]["category"] == "success_criteria"
    assert [(c["condition"], c["passed"]) for c in done["success_criteria"]] == [
        ("all_tasks_completed", True),
        ("compliance_score >= 0.7", False),
        ("no_critical_gaps", False),
    ]
    decided = _node(done, "routing-2")
    assert decided["state"] == "COMPLETED"
    assert decided["output"]["decided_by"] == "alice"  # who the key is, not a stated name
    assert _node(done, "routing-3")["state"] == "SKIPPED"  # the run never took two hours
    assert [(n["kind"], n["teams"], n["delivered"]) for n in done["notices"]] == [
        ("escalation", ["compliance_officer"], True),
        ("approval_required", ["cfo", "cro"], True),
    ]
    shown = subprocess.run(
        [*CLI, "status", execution_id, "--server", server.url, "--api-key", "k-carol"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "⚑ routing-1 escalate: fired, to compliance_officer" in shown.stdout, shown.stderr
    assert "✓ routing-2 require_approval: approved by alice" in shown.stdout
    assert "· routing-3: not fired (the run ended first)" in shown.stdout


def test_the_two_hour_alert_fires_once_when_its_threshold_passes(server: Server) -> None:
    text = DORA.replace('"workflow.duration > 7200"', '"workflow.duration > 1"')
    text = text.replace('id: "dora-compliance-assessment"', 'id: "dora-fast-alert"')
    text = text.replace('name: "DORA Compliance Assessment"', 'name: "DORA fast alert"', 1)
    with httpx.Client(base_url=server.url, timeout=10, headers=ALICE) as client:
        submitted = client.post("/v1/workflow", content=text, headers=YAML)
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]
        triggered = client.post(
            f"/v1/workflow/trigger/{execution_id}", json={"input_params": {"documents": []}}
        )
        assert triggered.status_code == 202, triggered.text
        deadline = time.monotonic() + 30
        while not any(
            n["kind"] == "alert" for n in _journal(client, execution_id, "execution.notice")
        ):
            assert time.monotonic() < deadline, "no alert"
            time.sleep(0.1)
        client.post(f"/v1/workflows/{execution_id}/nodes/routing-2/reject", json={})
        done = until(client, execution_id, "COMPLETED", "FAILED")
        alerts = [
            n for n in _journal(client, execution_id, "execution.notice") if n["kind"] == "alert"
        ]
    assert done["status"] == "FAILED" and _node(done, "routing-2")["state"] == "FAILED"
    [alert] = alerts
    assert alert["teams"] == ["ops_team"] and alert["data"]["duration"] > 1


def test_versions_are_activated_and_deprecated_through_the_client(server: Server) -> None:
    name = "DORA Compliance Assessment"
    second = DORA.replace('version: "1.0.0"', 'version: "1.1.0"')
    with httpx.Client(base_url=server.url, timeout=10, headers=ALICE) as client:
        # 1.0.0 may be stored already by the tests before: the same text again is the same version.
        for text in (DORA, second):
            assert client.post("/v1/workflow", content=text, headers=YAML).status_code == 201
    with Client(server.url, api_key="k-bob") as bob:
        versions = bob.versions(name)
        assert [(v.version, v.created_by, v.active) for v in versions][-2:] == [
            ("1.0.0", "alice", False),
            ("1.1.0", "alice", True),
        ]
        assert bob.activate(name, "1.0.0").status_changed_by == "bob"
        assert bob.get_definition(name).version == "1.0.0"
        bob.deprecate(name, "1.0.0")
        assert bob.get_definition(name).version == "1.1.0"
        with pytest.raises(Conflict, match="is deprecated"):
            bob.activate(name, "1.0.0")  # retired for good
        assert bob.get_definition(name).version == "1.1.0"
        with pytest.raises(NotFound):
            bob.versions("nope")
    with Client(server.url) as anonymous, pytest.raises(Unauthorized):
        anonymous.activate(name, "1.1.0")


GATE = """
name: gated-by-cfo
dag:
  nodes:
    - {id: gate, handler: approval, config: {approvers: [cfo]}}
    - {id: after, handler: noop, dependencies: [gate]}
"""


@pytest.mark.parametrize(
    "patch",
    [
        {"approvers": []},
        {"approvers": ["bob"]},
        {"timeout": "1s", "on_timeout": "approve"},
        {"on_reject": "continue"},
    ],
    ids=["no-approvers", "self", "timeout-approves", "reject-continues"],
)
def test_an_operator_cannot_lift_an_approval_by_overriding_it(
    server: Server, patch: dict[str, Any]
) -> None:
    bob = {"Authorization": "Bearer k-bob"}
    with httpx.Client(base_url=server.url, timeout=10, headers=bob) as client:
        submitted = client.post("/v1/workflow", content=GATE, headers=YAML)
        assert submitted.status_code == 201, submitted.text
        pending = submitted.json()["execution_id"]
        answers = [
            client.post(
                "/v1/definitions/gated-by-cfo/executions",
                json={"input_params": {}, "node_overrides": {"gate": patch}},
            ),
            client.post(f"/v1/workflow/trigger/{pending}", json={"gate": patch}),  # short form
        ]
        for answer in answers:
            assert answer.status_code == 422, answer.text
            fields = {e["field"] for e in answer.json()["errors"]}
            assert fields & {f"config.{key}" for key in patch}, answer.text
        assert client.get(f"/v1/workflows/{pending}").json()["status"] == "PENDING"
