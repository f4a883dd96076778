"""Approvals check who decides, through a real ``orchestrion serve``.

The decider is the API key the request authenticated with (its name from
``ORCHESTRION_API_KEYS="key:role:name"``, its role, or a group of
``ORCHESTRION_APPROVER_GROUPS``), never the ``by`` its body states; the decision records it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server
from test_cli import orchestrion

pytestmark = pytest.mark.slow

KEYS = "cfo-key:operator:cfo,intern-key:operator:intern,ctl-key:operator:controller,adm-key:admin"
GROUPS = "finance=controller+treasurer"
CFO = {"Authorization": "Bearer cfo-key"}
INTERN = {"Authorization": "Bearer intern-key"}
CONTROLLER = {"Authorization": "Bearer ctl-key"}
ADMIN = {"Authorization": "Bearer adm-key"}


def flow(approvers: list[str]) -> dict[str, Any]:
    return {
        "name": "gated",
        "dag": {
            "nodes": [
                {"id": "sign", "handler": "approval", "config": {"approvers": approvers}},
                {"id": "after", "handler": "noop", "dependencies": ["sign"]},
            ]
        },
    }


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    env = {"ORCHESTRION_API_KEYS": KEYS, "ORCHESTRION_APPROVER_GROUPS": GROUPS}
    running = Server(tmp_path, tmp_path / "a.db", env)
    try:
        yield running
    finally:
        running.stop()


def waiting(client: httpx.Client, approvers: list[str]) -> str:
    submitted = client.post("/v1/workflow", json=flow(approvers), headers=ADMIN)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    assert client.post(f"/v1/workflow/trigger/{execution_id}", headers=ADMIN).status_code == 202
    deadline = time.monotonic() + 30
    while client.get(f"/v1/workflows/{execution_id}", headers=ADMIN).json()["status"] != "WAITING":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return execution_id


def decide(
    client: httpx.Client, execution_id: str, headers: dict[str, str], verb: str = "approve"
) -> httpx.Response:
    return client.post(
        f"/v1/workflows/{execution_id}/nodes/sign/{verb}",
        json={"by": "cfo", "comment": "looks fine"},
        headers=headers,
    )


def finished(client: httpx.Client, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        body: dict[str, Any] = client.get(f"/v1/workflows/{execution_id}", headers=ADMIN).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.05)


def test_only_a_listed_approver_decides_and_the_decision_records_the_key(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = waiting(client, ["cfo"])
        for verb in ("approve", "reject"):
            refused = decide(client, execution_id, INTERN, verb)  # claims to be the cfo
            assert refused.status_code == 403, refused.text
            assert "sign" in refused.json()["detail"] and "intern" in refused.json()["detail"]
        still = client.get(f"/v1/workflows/{execution_id}", headers=ADMIN).json()
        assert still["status"] == "WAITING"
        assert decide(client, execution_id, CFO).status_code == 202
        body = finished(client, execution_id)
        assert body["status"] == "COMPLETED"
        decision = body["nodes"]["sign"]["output"]
        assert decision["decided_by"] == "cfo"
        assert decision["decided_by_role"] == "operator"
        assert decision["decided_by_key"].startswith("key:")
        sign = body["nodes"]["sign"]
        assert 0 < sign["waited_ms"] <= sign["duration_ms"]  # the wait, shown apart


def test_a_body_cannot_name_someone_else_as_the_decider(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = waiting(client, [])  # anyone with operator rights may decide
        assert decide(client, execution_id, INTERN).status_code == 202
        decision = finished(client, execution_id)["nodes"]["sign"]["output"]
        assert decision["decided_by"] == "intern"  # not the "cfo" the body claimed


@pytest.mark.parametrize(
    ("approvers", "allowed", "refused"),
    [
        (["admin"], ADMIN, CFO),  # a role
        (["finance"], CONTROLLER, CFO),  # a group of key names
    ],
)
def test_approvers_name_roles_and_groups(
    server: Server, approvers: list[str], allowed: dict[str, str], refused: dict[str, str]
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = waiting(client, approvers)
        assert decide(client, execution_id, refused).status_code == 403
        assert decide(client, execution_id, allowed).status_code == 202
        assert finished(client, execution_id)["status"] == "COMPLETED"


def test_an_open_server_refuses_a_decision_that_names_approvers(tmp_path: Path) -> None:
    server = Server(tmp_path, tmp_path / "open.db")
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            execution_id = waiting(client, ["cfo"])
            refused = decide(client, execution_id, {})
            assert refused.status_code == 403, refused.text
            assert "ORCHESTRION_API_KEYS" in refused.json()["detail"]
            assert refused.json()["type"] == "urn:orchestrion:problem:approvers-unverifiable"
            # No API key was refused (there are none): no key would do, the request cannot be
            # granted on this server. Exit 2 (invalid request), not 6 (key refused).
            for verb in ("approve", "reject"):
                ran = orchestrion(verb, execution_id, "sign", "--server", server.url)
                assert ran.returncode == 2, (ran.returncode, ran.stderr)
                assert "ORCHESTRION_API_KEYS" in ran.stderr
            sign = client.get(f"/v1/workflows/{execution_id}").json()["nodes"]["sign"]
            assert sign["state"] == "WAITING"
    finally:
        server.stop()


def test_the_cli_through_the_server_decides_as_its_key(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = waiting(client, ["cfo"])
        base = ["approve", execution_id, "sign", "--server", server.url, "--by", "cfo"]
        refused = orchestrion(*base, "--api-key", "intern-key")
        assert refused.returncode == 6, refused.stderr  # the key is refused: not an approver
        assert "intern" in refused.stdout + refused.stderr
        approved = orchestrion(*base, "--api-key", "cfo-key")
        assert approved.returncode == 0, approved.stderr
        assert finished(client, execution_id)["nodes"]["sign"]["output"]["decided_by"] == "cfo"
