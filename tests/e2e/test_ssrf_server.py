"""The SSRF guard through a real ``orchestrion serve`` (uvicorn) process.

The server's policy denies loopback. An operator submits a workflow whose http nodes aim at
a real listener on this host through every spelling of it (0.0.0.0, ``0``, ``[::]``,
``[::ffff:0:0]``, ``[::ffff:127.0.0.1]``, ``[::127.0.0.1]``, decimal...) and whose llm node
has its provider there: every node fails with category ``policy_violation`` on its first
attempt, and the listener receives nothing.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server

from this_host import listening, this_host_urls

pytestmark = pytest.mark.slow

KEYS = "adm-key:admin,op-key:operator"
OPERATOR = {"Authorization": "Bearer op-key"}
POLICY = "version: 1\nhttp:\n  deny_loopback: true\n"
KEY_ENV = "SSRF_E2E_API_KEY"
LLM_SPELLINGS = ("unspecified", "mapped-unspecified-hex", "v6-unspecified")


def _nodes(port: int) -> list[dict[str, Any]]:
    retry = {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]}
    nodes: list[dict[str, Any]] = [
        {"id": name, "handler": "http", "config": {"url": url, "timeout": 5}, "retry": retry}
        for name, url in this_host_urls(port, "/served").items()
    ]
    for name in LLM_SPELLINGS:
        # The provider is the operator's (the policy's llm.providers): the service refuses
        # a node's own base_url, and the SSRF guard checks the provider's URL all the same.
        config = {"provider": name, "model": "gpt-test", "prompt": "hello", "timeout": 5}
        nodes.append({"id": f"llm-{name}", "handler": "llm", "config": config, "retry": retry})
    return nodes


def _policy(port: int) -> str:
    urls = this_host_urls(port, "/v1")
    providers = "".join(
        f"    {name}: {{base_url: '{urls[name]}', api_key_env: {KEY_ENV}}}\n"
        for name in LLM_SPELLINGS
    )
    return POLICY + "llm:\n  providers:\n" + providers


def test_a_served_workflow_cannot_reach_this_host(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    env = {
        "ORCHESTRION_API_KEYS": KEYS,
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        KEY_ENV: "sk-test",
    }
    with listening() as target:
        policy.write_text(_policy(target.port))
        server = Server(tmp_path, tmp_path / "ssrf.db", env)
        try:
            nodes = _nodes(target.port)
            with httpx.Client(base_url=server.url, timeout=10) as client:
                definition = {"name": "this-host", "dag": {"nodes": nodes}}
                submitted = client.post("/v1/workflow", json=definition, headers=OPERATOR)
                assert submitted.status_code == 201, submitted.text
                execution_id = submitted.json()["execution_id"]
                trigger = client.post(
                    f"/v1/workflow/trigger/{execution_id}", json={}, headers=OPERATOR
                )
                assert trigger.status_code == 202, trigger.text
                deadline = time.monotonic() + 60
                while True:
                    body = client.get(f"/v1/workflows/{execution_id}", headers=OPERATOR).json()
                    if body["status"] in ("COMPLETED", "FAILED"):
                        break
                    assert time.monotonic() < deadline, body
                    time.sleep(0.1)
        finally:
            assert server.stop() == 0, server.log.read_text()
        assert body["status"] == "FAILED", body
        for node in nodes:
            shown = body["nodes"][node["id"]]
            assert shown["state"] == "FAILED", (node["id"], shown)
            assert shown["error"]["category"] == "policy_violation", (node["id"], shown)
            assert "SSRF guard" in shown["error"]["message"], (node["id"], shown)
            assert shown["attempt"] == 1, (node["id"], shown)
        assert target.requests == []
