"""Inbound webhooks through a real ``orchestrion serve`` with API keys on: a signed delivery
starts its workflow without a key, a bad or missing signature, an unknown trigger, a replayed
delivery, a stale timestamp and an oversized body are refused as users see it; and the same
server publishes every transition to a webhook sink, signed, received by a real local server."""

from __future__ import annotations

import hashlib
import hmac
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

from audit_helpers import AUDIT_ENV
from loopback_listener import Listener, serve_listener
from orchestrion.governance.webhook_signing import (
    standard_key,
    standard_signature,
    verify_timestamped,
)

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]

SECRET = "s3cret-for-tests"
SINK_SECRET = "sink-secret"
ADMIN_KEY = "admin-key-0123456789"
WORKFLOW = """\
name: on-push
inputs:
  ref: {type: string, required: true}
triggers:
  - type: webhook
    name: github
    secret: GITHUB
    scheme: github
    filter: "event.headers['x-github-event'] == 'push'"
    inputs:
      ref: "{{ payload.ref }}"
  - type: webhook
    name: signed
    secret: GITHUB
  - type: webhook
    name: standard
    secret: GITHUB
    scheme: standard
dag:
  nodes:
    - id: build
      handler: noop
"""


ECHO = """\
name: echo-headers
inputs:
  headers: {type: object, required: true}
triggers:
  - type: webhook
    name: hook
    secret: GITHUB
    scheme: github
    inputs:
      headers: "{{ event.headers }}"
dag:
  nodes:
    - id: noop
      handler: noop
"""


def github_headers(body: bytes, delivery: str, event: str = "push") -> dict[str, str]:
    digest = hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return {
        "Content-Type": "application/json",
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery,
        "X-Hub-Signature-256": f"sha256={digest}",
    }


def stamped(body: bytes, at: int | None = None) -> dict[str, str]:
    at = int(time.time()) if at is None else at
    digest = hmac.new(SECRET.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Orchestrion-Signature": f"t={at},v1={digest}"}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Listener]:
    yield from serve_listener()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: Listener) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("webhooks-server")
    sinks = {
        "sinks": [
            {
                "name": "ops",
                "type": "webhook",
                # a URL that is a credential: user, password and a token in the query
                "url": f"http://hook-user:hook-pass@127.0.0.1:{receiver.port}/events?t=url-tok",
                "secret_env": "OPS_SINK_SECRET",
                "events": ["execution.*"],
            }
        ]
    }
    env = {
        **AUDIT_ENV,
        "ORCHESTRION_API_KEYS": f"{ADMIN_KEY}:admin",
        "ORCHESTRION_WEBHOOK_SECRET_GITHUB": SECRET,
        "ORCHESTRION_WEBHOOK_MAX_BODY_BYTES": "4096",
        # callers without a key (webhook senders) are limited by address
        "ORCHESTRION_RATE_LIMIT_UNAUTHENTICATED_PER_SECOND": "1",
        "ORCHESTRION_RATE_LIMIT_UNAUTHENTICATED_BURST": "60",
        "ORCHESTRION_SINKS": json.dumps(sinks),
        "OPS_SINK_SECRET": SINK_SECRET,
    }
    running = Server(folder, folder / "hooks.db", env)
    try:
        for text in (WORKFLOW, ECHO):
            response = httpx.post(
                f"{running.url}/v1/workflow",
                content=text,
                headers={
                    "Content-Type": "application/yaml",
                    "Authorization": f"Bearer {ADMIN_KEY}",
                },
            )
            assert response.status_code == 201, response.text
        yield running
    finally:
        assert running.stop() == 0, running.log.read_text()


def hook(server: Server, name: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/hooks/on-push/{name}", content=body, headers=headers)


def test_a_signed_delivery_starts_the_workflow_once_without_an_api_key(server: Server) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": "abc123"}).encode()
    first = hook(server, "github", body, github_headers(body, "d-1"))
    assert first.status_code == 202, first.text
    [started] = first.json()["executions"]
    again = hook(server, "github", body, github_headers(body, "d-1"))
    assert again.status_code == 202
    assert [e["execution_id"] for e in again.json()["executions"]] == [started["execution_id"]]
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, headers=auth) as client:
        detail = until(client, started["execution_id"], "COMPLETED")
        assert detail["inputs"] == {"ref": "refs/heads/main"}
        records = client.get("/v1/audit", params={"action": "webhook.received"}).json()
    assert records["enabled"] is True
    # each delivery is audited; the second one names the execution the first one started
    both = [r for r in records["records"] if r["details"]["sent_delivery"] == "d-1"]
    assert len(both) == 2
    for record in both:
        assert record["actor"] == "webhook:on-push/github"
        assert record["details"]["started"] == [started["execution_id"]]


def test_templates_see_headers_but_never_credential_ones(server: Server) -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = {
        **github_headers(body, "d-token"),
        "X-Gitlab-Token": "tok-123",
        "X-Api-Key": "key-456",
        "X-Request-Source": "ci",
    }
    answer = httpx.post(f"{server.url}/v1/hooks/echo-headers/hook", content=body, headers=headers)
    assert answer.status_code == 202, answer.text
    [started] = answer.json()["executions"]
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, headers=auth) as client:
        seen = until(client, started["execution_id"], "COMPLETED")["inputs"]["headers"]
    assert seen["x-github-event"] == "push" and seen["x-request-source"] == "ci"
    assert seen["x-github-delivery"] == "d-token"
    for hidden in ("x-gitlab-token", "x-api-key", "x-hub-signature-256"):
        assert hidden not in seen


def test_a_filter_on_a_header_skips_other_github_events(server: Server) -> None:
    body = json.dumps({"zen": "Keep it logically awesome."}).encode()
    answer = hook(server, "github", body, github_headers(body, "d-ping", event="ping"))
    assert answer.status_code == 202
    assert answer.json()["executions"] == []
    assert answer.json()["skipped"][0]["reason"] == "filter"


@pytest.mark.parametrize(
    "tamper",
    ["wrong-signature", "no-signature", "unknown-trigger", "unknown-workflow", "other-body"],
)
def test_refusals_all_look_the_same_to_a_stranger(server: Server, tamper: str) -> None:
    body = json.dumps({"ref": "refs/heads/main"}).encode()
    headers = github_headers(body, f"d-{tamper}")
    path = "github"
    url = f"{server.url}/v1/hooks/on-push/{path}"
    if tamper == "wrong-signature":
        headers["X-Hub-Signature-256"] = "sha256=" + "0" * 64
    elif tamper == "no-signature":
        del headers["X-Hub-Signature-256"]
    elif tamper == "unknown-trigger":
        url = f"{server.url}/v1/hooks/on-push/nope"
    elif tamper == "unknown-workflow":
        url = f"{server.url}/v1/hooks/nope/github"
    else:
        body = body.replace(b"main", b"evil")
    answer = httpx.post(url, content=body, headers=headers)
    assert answer.status_code == 401, answer.text
    problem = answer.json()
    assert "not signed with this trigger's secret" in problem["detail"]
    assert SECRET not in answer.text


def test_a_timestamped_signature_refuses_replays_and_old_requests(server: Server) -> None:
    body = json.dumps({"ref": "refs/tags/v1"}).encode()
    headers = stamped(body)
    first = hook(server, "signed", body, headers)
    assert first.status_code == 202, first.text
    [started] = first.json()["executions"]
    replay = hook(server, "signed", body, headers)  # the same signed request, captured
    assert replay.status_code == 202
    assert [e["execution_id"] for e in replay.json()["executions"]] == [started["execution_id"]]
    old = hook(server, "signed", body, stamped(body, at=int(time.time()) - 3600))
    assert old.status_code == 401
    assert "away from now" in old.json()["detail"]
    future = hook(server, "signed", body, stamped(body, at=int(time.time()) + 3600))
    assert future.status_code == 401


def test_a_standard_webhooks_delivery_starts_once_by_its_message_id(server: Server) -> None:
    body = json.dumps({"ref": "refs/heads/std"}).encode()
    at = int(time.time())
    signature = standard_signature(standard_key(SECRET), "msg_1", at, body)
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_1",
        "webhook-timestamp": str(at),
        "webhook-signature": signature,
    }
    first = hook(server, "standard", body, headers)
    assert first.status_code == 202, first.text
    [started] = first.json()["executions"]
    again = hook(server, "standard", body, headers)
    assert [e["execution_id"] for e in again.json()["executions"]] == [started["execution_id"]]
    other_id = hook(server, "standard", body, {**headers, "webhook-id": "msg_2"})
    assert other_id.status_code == 401  # the id is signed too


def _started(answer: httpx.Response) -> list[str]:
    assert answer.status_code == 202, answer.text
    return [e["execution_id"] for e in answer.json()["executions"]]


@pytest.mark.parametrize(
    "change",
    [
        {"X-GitHub-Delivery": "d-replay-2"},
        {"Idempotency-Key": "new-key"},
        {"X-Orchestrion-Delivery": "other"},
        {"webhook-id": "msg_x"},
    ],
    ids=["github-delivery", "idempotency-key", "orchestrion-delivery", "webhook-id"],
)
def test_a_captured_github_delivery_replayed_under_a_new_id_starts_nothing(
    server: Server, change: dict[str, str]
) -> None:
    body = json.dumps({"ref": f"refs/heads/replay-{sorted(change)[0]}"}).encode()
    first = _started(hook(server, "github", body, github_headers(body, "d-replay-1")))
    replayed = {**github_headers(body, "d-replay-1"), **change}
    assert _started(hook(server, "github", body, replayed)) == first
    unnamed = {k: v for k, v in github_headers(body, "x").items() if k != "X-GitHub-Delivery"}
    assert _started(hook(server, "github", body, unnamed)) == first
    # another body under the first one's delivery id is another delivery
    other = json.dumps({"ref": "refs/heads/replay-other-" + sorted(change)[0]}).encode()
    assert _started(hook(server, "github", other, github_headers(other, "d-replay-1"))) != first


def test_a_captured_timestamped_delivery_replayed_in_another_shape_starts_nothing(
    server: Server,
) -> None:
    body = json.dumps({"ref": "refs/tags/replay"}).encode()
    headers = stamped(body)
    first = _started(hook(server, "signed", body, headers))
    t, v1 = headers["X-Orchestrion-Signature"].split(",")
    for variant in (
        {**headers, "X-Orchestrion-Delivery": "new-1"},
        {**headers, "Idempotency-Key": "new-2"},
        {**headers, "X-Orchestrion-Signature": f"{t},{v1},{v1}"},  # the mac twice
        {**headers, "X-Orchestrion-Signature": f"{t},v1={'0' * 64},{v1}"},  # with a bad one
    ):
        assert _started(hook(server, "signed", body, variant)) == first
    # the sender's own retry, signed again later, is another delivery: the time is signed
    later = stamped(body, at=int(time.time()) + 1)
    assert _started(hook(server, "signed", body, later)) != first


def test_a_standard_delivery_is_known_by_its_signed_id_only(server: Server) -> None:
    body = json.dumps({"ref": "refs/heads/std-replay"}).encode()
    at = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "webhook-id": "msg_replay",
        "webhook-timestamp": str(at),
        "webhook-signature": standard_signature(standard_key(SECRET), "msg_replay", at, body),
    }
    first = _started(hook(server, "standard", body, headers))
    for extra in ({"X-GitHub-Delivery": "x1"}, {"Idempotency-Key": "x2"}):
        assert _started(hook(server, "standard", body, {**headers, **extra})) == first


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ("&".join(f"f{i}=1" for i in range(17)) + "&payload=%7B%7D", 422, "at most 16 fields"),
        ("&".join(["payload=%7B%7D"] * 40), 422, "at most 16 fields"),
        ("ref=main", 422, "needs a 'payload' field"),
        ("payload=%7Bnot", 422, "not JSON"),
    ],
    ids=["many-fields", "repeated-payload", "no-payload", "bad-json"],
)
def test_a_signed_form_body_that_is_not_a_github_form_is_refused(
    server: Server, body: str, code: int, says: str
) -> None:
    data = body.encode()
    headers = {
        **github_headers(data, "d-form"),
        "Content-Type": "application/x-www-form-urlencoded",
    }
    answer = hook(server, "github", data, headers)
    assert answer.status_code == code, answer.text
    assert says in answer.json()["detail"]


def test_an_oversized_or_malformed_body_is_refused(server: Server) -> None:
    big = json.dumps({"ref": "x" * 5000}).encode()
    answer = hook(server, "github", big, github_headers(big, "d-big"))
    assert answer.status_code == 413, answer.text
    assert "at most 4096 bytes" in answer.json()["detail"]
    listed = b"[1, 2]"
    answer = hook(server, "github", listed, github_headers(listed, "d-list"))
    assert answer.status_code == 422
    assert "JSON object" in answer.json()["detail"]
    body = b'{"ref": "main"}'
    bad_id = github_headers(body, "has spaces")
    answer = hook(server, "github", body, bad_id)
    assert answer.status_code == 422
    assert "x-github-delivery" in answer.json()["detail"]


def test_the_server_publishes_execution_events_to_a_signed_webhook_sink(
    server: Server, receiver: Listener
) -> None:
    body = json.dumps({"ref": "refs/heads/sink"}).encode()
    answer = hook(server, "github", body, github_headers(body, "d-sink"))
    assert answer.status_code == 202
    [started] = answer.json()["executions"]
    execution_id = started["execution_id"]

    def types() -> list[dict[str, Any]]:
        found = []
        for request in list(receiver.received):
            event = json.loads(request["body"])
            if event["workflow_id"] == execution_id:
                found.append(request)
        return found

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if any(json.loads(r["body"])["type"] == "execution.completed" for r in types()):
            break
        time.sleep(0.05)
    received = types()
    kinds = [json.loads(r["body"])["type"] for r in received]
    assert kinds[0] == "execution.started" and kinds[-1] == "execution.completed", kinds
    assert all(kind.startswith("execution.") for kind in kinds)
    for request in received:
        event = json.loads(request["body"])
        # the correlation id is the webhook delivery's event id; causation chains the events
        assert event["correlation_id"] == answer.json()["event_id"]
        assert request["path"] == "/events?t=url-tok"
        assert event["metadata"]["workflow"] == "on-push"
        headers = {k.lower(): v for k, v in request["headers"].items()}
        verify_timestamped(
            SINK_SECRET.encode(),
            request["body"].encode(),
            headers["x-orchestrion-signature"],
            time.time(),
            300,
        )
        assert headers["idempotency-key"] == event["id"]
    # the server logs each request, naming the sink and its host, never its URL's credentials
    log = server.log.read_text()
    assert "POST http://127.0.0.1:" in log and "(sink ops)" in log, log[-2000:]
    for secret in ("url-tok", "hook-pass", "hook-user"):
        assert secret not in log


def test_admins_see_the_sinks_and_what_they_owe_without_their_secrets(server: Server) -> None:
    auth = {"Authorization": f"Bearer {ADMIN_KEY}"}
    with httpx.Client(base_url=server.url, headers=auth) as client:
        listed = client.get("/v1/admin/sinks")
        assert listed.status_code == 200, listed.text
        [sink] = listed.json()["sinks"]
        assert sink["name"] == "ops" and sink["type"] == "webhook"
        assert sink["events"] == ["execution.*"]
        assert SINK_SECRET not in listed.text and "OPS_SINK_SECRET" not in listed.text
        assert client.get("/v1/admin/sinks/deliveries", params={"status": "dead"}).json() == {
            "items": []
        }
        missing = client.post("/v1/admin/sinks/deliveries/999/retry")
        assert missing.status_code == 404
    stranger = httpx.get(f"{server.url}/v1/admin/sinks")
    assert stranger.status_code == 401


def test_the_client_and_the_cli_show_and_act_on_what_sinks_owe(
    server: Server, tmp_path: Path
) -> None:
    from orchestrion.client import Client

    with Client(server.url, api_key=ADMIN_KEY) as client:
        [sink] = client.sinks()
        assert (sink.name, sink.type, sink.owed, sink.dead) == ("ops", "webhook", 0, 0)
        assert client.sink_deliveries(status="dead") == []
    listed = subprocess.run(
        [*CLI, "sinks", "list", "--server", server.url, "--api-key", ADMIN_KEY, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[0]["name"] == "ops"
    missing = subprocess.run(
        [*CLI, "sinks", "retry", "12345", "--server", server.url, "--api-key", ADMIN_KEY],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert missing.returncode == 5, (missing.stdout, missing.stderr)  # not found


def test_a_flood_of_deliveries_is_rate_limited_by_address(server: Server) -> None:
    """Last in this module: it spends the address's whole burst."""
    body = json.dumps({"ref": "refs/heads/flood"}).encode()
    statuses = []
    with httpx.Client() as client:
        for i in range(80):
            answer = client.post(
                f"{server.url}/v1/hooks/on-push/github",
                content=body,
                headers=github_headers(body, f"flood-{i}", event="ping"),
            )
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert int(answer.headers["Retry-After"]) >= 1
                break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {202}
