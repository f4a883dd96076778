"""Trigger-time node overrides are checked when the trigger arrives, against the node's handler
config schema, through a real ``orchestrion serve``: a bad key or value answers 422 naming the
node and the field, and nothing starts."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server

pytestmark = pytest.mark.slow

FLOW = {
    "name": "overridable",
    "dag": {
        "nodes": [
            {"id": "gate", "handler": "approval"},
            {"id": "nap", "handler": "delay", "dependencies": ["gate"], "config": {"seconds": 1}},
            {"id": "pick", "handler": "noop", "dependencies": ["gate"], "config": {"value": 1}},
        ]
    },
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path, tmp_path / "o.db")
    try:
        yield running
    finally:
        running.stop()


def _pending(client: httpx.Client) -> str:
    submitted = client.post("/v1/workflow", json=FLOW)
    assert submitted.status_code == 201, submitted.text
    return str(submitted.json()["execution_id"])


@pytest.mark.parametrize(
    ("body", "node", "field"),
    [
        ({"node_overrides": {"nap": {"seconds": "soon"}}}, "nap", "config.seconds"),
        ({"node_overrides": {"nap": {"sleep": 3}}}, "nap", "config.sleep"),
        ({"gate": {"on_timeout": "shrug"}}, "gate", "config.on_timeout"),  # reference form
        ({"node_overrides": {"ghost": {"value": 1}}}, "ghost", "overrides"),
        ({"node_overrides": {"pick": {"value": "{{ broken"}}}, "pick", "config.value"),
        ({"node_overrides": {"pick": {"value": "{{ nap.output }}"}}}, "pick", "config.value"),
        ({"node_overrides": {"pick": {"value": "{{ naps.output }}"}}}, "pick", "config.value"),
    ],
)
def test_a_bad_override_answers_422_naming_node_and_field(
    server: Server, body: dict[str, Any], node: str, field: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = _pending(client)
        answer = client.post(f"/v1/workflow/trigger/{execution_id}", json=body)
        # An unknown node is invalid content of the request, as a bad config is.
        assert answer.status_code == 422, answer.text
        problem = answer.json()
        assert [(e["node"], e["field"]) for e in problem["errors"]] == [(node, field)]
        assert node in problem["detail"]
        status = client.get(f"/v1/workflows/{execution_id}").json()
        assert status["status"] == "PENDING"  # nothing started

        if "node_overrides" in body:  # the start of a new execution checks them alike
            started = client.post(
                "/v1/definitions/overridable/executions",
                json={"node_overrides": body["node_overrides"]},
            )
            assert started.status_code == 422, started.text
            assert [(e["node"], e["field"]) for e in started.json()["errors"]] == [(node, field)]


def test_a_valid_override_is_accepted_and_templates_wait_for_the_run(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=10) as client:
        execution_id = _pending(client)
        body = {
            "node_overrides": {
                "nap": {"seconds": "{{ input.wait }}"},
                "pick": {"value": "{{ gate.output.approved }}"},
            }
        }
        answer = client.post(f"/v1/workflow/trigger/{execution_id}", json=body)
        assert answer.status_code == 202, answer.text
