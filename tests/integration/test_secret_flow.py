"""A secret reaches the listener it is meant for, and nothing else: real runs on SQLite.

Secrets in the headers and body of an http node arrive at a loopback listener; the node's
output, its errors, its events and the SQLite file hold neither the value nor its common
transforms, even when the listener echoes the request back. A secret bound for a host the
policy does not allow, directly or through a redirect, fails the node as a policy violation
before any connection: the listener receives nothing.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopback_listener import Listener, serve_listener
from orchestrion.cluster.worker import Worker
from orchestrion.core.events import NodeFailed, NodeSucceeded
from orchestrion.core.states import ExecutionStatus
from orchestrion.dispatch.base import TaskMessage
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError
from orchestrion.execution import enforce
from orchestrion.execution.executor import NodeExecutor
from orchestrion.governance.runtime import Governance
from orchestrion.governance.trust import Trust
from orchestrion.handlers.base import Controls, Resources
from orchestrion.handlers.registry import default_registry
from scaleout import scaleout_settings

SECRET = "Tok3n-Sup3r-S3cret-42"
TRANSFORMS = [SECRET, SECRET[::-1], SECRET.lower(), SECRET.upper()]


@pytest.fixture
def allowed() -> Iterator[Listener]:
    yield from serve_listener()


@pytest.fixture
def elsewhere() -> Iterator[Listener]:
    yield from serve_listener()


@pytest.fixture
def governance(tmp_path: Path, allowed: Listener, monkeypatch: pytest.MonkeyPatch) -> Governance:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRION_SECRET_TOKEN", SECRET)
    policy = tmp_path / "governance.yaml"
    policy.write_text(f"version: 1\nsecrets:\n  TOKEN:\n    hosts: ['127.0.0.1:{allowed.port}']\n")
    # Untrusted, as the service runs definitions.
    return Governance.load(policy, trusted=False, environ={})


def _stored(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))


def _no_secret(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in TRANSFORMS:
        assert value.encode() not in data, value


def _http(node_id: str, url: str, **config: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "http",
        "dependencies": ["input"],
        "retry": {"max_attempts": 1},
        "config": {"url": url, **config},
    }


def _flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "secret-flow", "dag": {"nodes": [{"id": "input", "handler": "input"}, *nodes]}}


async def test_secrets_reach_the_listener_and_no_output_event_or_file(
    tmp_path: Path, governance: Governance, allowed: Listener
) -> None:
    node = _http(
        "call",
        allowed.url + "/api",
        method="POST",
        headers={
            "Authorization": "Bearer {{ secrets.TOKEN }}",
            "X-Plain": "{{ secrets.TOKEN }}",
            "X-Keyed": "{{ secrets['TOKEN'] }}",
        },
        json={"token": "{{ secrets.TOKEN }}"},
    )
    async with Engine(f"sqlite:///{tmp_path / 's.db'}", governance=governance) as engine:
        result = await engine.run(_flow(node), timeout=30)
        events = await engine.store.list_events(result.execution_id)
    assert result.status is ExecutionStatus.COMPLETED, result.nodes["call"].error
    [request] = allowed.received
    assert request["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert request["headers"]["X-Plain"] == SECRET
    assert request["headers"]["X-Keyed"] == SECRET
    assert json.loads(request["body"]) == {"token": SECRET}
    # The listener echoed every one of them: the output holds none.
    output = result.nodes["call"].output
    assert output["status_code"] == 200
    assert output["data"]["echo"]["headers"]["Authorization"] == "Bearer ***"
    _no_secret(json.dumps(output))
    assert any(e.type == "node.completed" for e in events)
    _no_secret(json.dumps([dataclasses.asdict(e) for e in events], default=str))
    _no_secret(_stored(tmp_path))


TRANSFORMED = [
    "{{ secrets.TOKEN | reverse }}",
    "{{ secrets.TOKEN[::-1] }}",
    "{{ secrets.TOKEN | list | join(',') }}",
    "{% set s = secrets %}{{ s.TOKEN }}",
]


@pytest.mark.parametrize("template", TRANSFORMED)
async def test_a_trigger_override_cannot_move_a_secret_into_an_output(
    tmp_path: Path, governance: Governance, template: str
) -> None:
    node = {"id": "echo", "handler": "noop", "dependencies": ["input"], "config": {"value": "x"}}
    async with Engine(f"sqlite:///{tmp_path / 's.db'}", governance=governance) as engine:
        definition = await engine.submit(_flow(node))
        record, _ = await engine.create_execution(definition.id)
        with pytest.raises(DefinitionError) as info:
            await engine.trigger(record.id, {}, {"echo": {"value": template}})
        assert [(i.node, i.field, i.code) for i in info.value.issues] == [
            ("echo", "config.value", "secret_field")
        ]
        with pytest.raises(DefinitionError, match="api_key_env"):
            await engine.start_execution(
                _flow({"id": "ask", "handler": "llm", "config": {"prompt": "hi"}}),
                overrides={"ask": {"api_key_env": "OPENAI_API_KEY"}},
            )
    _no_secret(_stored(tmp_path))


@pytest.mark.parametrize("template", TRANSFORMED)
async def test_every_attempt_checks_where_its_secrets_flow(template: str) -> None:
    # A definition stored under an older policy reaches a worker as it is: the attempt
    # fails before anything renders.
    executor = NodeExecutor(
        default_registry(), Resources(Controls.unrestricted()), secrets={"TOKEN": SECRET}
    )
    task = TaskMessage("e1", "echo", 1, "noop", {"value": template}, {}, {}, idempotency_key="k")
    events: list[Any] = []
    await executor.execute(task, lambda _execution, event: events.append(event))
    failed = events[-1]
    assert isinstance(failed, NodeFailed), failed
    assert failed.error.category == "policy_violation"
    assert "config.value" in failed.error.message
    _no_secret(json.dumps(dataclasses.asdict(failed), default=str))


async def test_a_secret_bound_elsewhere_is_refused_before_any_connection(
    tmp_path: Path, governance: Governance, allowed: Listener, elsewhere: Listener
) -> None:
    header = {"Authorization": "Bearer {{ secrets.TOKEN }}"}
    async with Engine(f"sqlite:///{tmp_path / 's.db'}", governance=governance) as engine:
        # Written out: refused at submission, naming node and field.
        with pytest.raises(DefinitionError) as info:
            await engine.submit(_flow(_http("static", elsewhere.url, headers=header)))
        [issue] = info.value.issues
        assert (issue.node, issue.field, issue.code) == (
            "static",
            "config.headers.Authorization",
            "policy_violation",
        )
        # Known only when rendered: the node fails, nothing is sent.
        dynamic = _http("dynamic", "{{ input.target }}", headers=header)
        result = await engine.run(_flow(dynamic), {"target": elsewhere.url + "/x"}, timeout=30)
        error = result.nodes["dynamic"].error
        assert error is not None and error["category"] == "policy_violation"
        assert "may not be sent to 127.0.0.1" in error["message"]
        # A redirect from the allowed host to another: the hop is refused before it is made.
        allowed.redirect_to = elsewhere.url + "/stolen"
        hop = _http("hop", allowed.url + "/start", headers={"X-Api-Key": "{{ secrets.TOKEN }}"})
        result = await engine.run(_flow(hop), timeout=30)
        error = result.nodes["hop"].error
        assert error is not None and error["category"] == "policy_violation"
    assert [r["path"] for r in allowed.received] == ["/start"]
    assert elsewhere.received == []
    _no_secret(_stored(tmp_path))


async def test_errors_never_quote_a_request_that_carries_secrets(
    tmp_path: Path, governance: Governance, allowed: Listener
) -> None:
    # h11 quotes an illegal header value whole: only its kind is told.
    headers = {"X-Bad": "{{ secrets.TOKEN }}\nInjected: 1"}
    async with Engine(f"sqlite:///{tmp_path / 's.db'}", governance=governance) as engine:
        result = await engine.run(_flow(_http("call", allowed.url, headers=headers)), timeout=30)
    error = result.nodes["call"].error
    assert error is not None and "details withheld" in error["message"], error
    _no_secret(json.dumps(error))
    _no_secret(_stored(tmp_path))
    assert allowed.received == []


async def test_a_missing_secret_is_named(tmp_path: Path, governance: Governance) -> None:
    node = _http(
        "call", "http://127.0.0.1:9/", headers={"A": "{{ secrets.TOKEN }}{{ secrets.NOPE }}"}
    )
    async with Engine(f"sqlite:///{tmp_path / 's.db'}", governance=governance) as engine:
        with pytest.raises(DefinitionError, match="secret 'NOPE' has no destination"):
            await engine.submit(_flow(node))


async def test_a_scale_out_worker_routes_secrets_the_same(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    governance: Governance,
    allowed: Listener,
    elsewhere: Listener,
) -> None:
    config = scaleout_settings(postgres_url, redis_server, redis_prefix)
    worker = Worker(
        redis_server,
        config,
        default_registry(),
        worker_id="w0",
        governance=governance,
        secrets={"TOKEN": SECRET},
    )
    await worker.start()
    header = {"Authorization": "Bearer {{ secrets.TOKEN }}"}
    try:
        async with Engine(settings=config, governance=governance) as engine:
            ok = await engine.run(_flow(_http("call", allowed.url, headers=header)), timeout=30)
            bad = await engine.run(
                _flow(_http("out", "{{ input.to }}", headers=header)),
                {"to": elsewhere.url},
                timeout=30,
            )
    finally:
        await worker.stop(grace=0)
    assert ok.status is ExecutionStatus.COMPLETED, ok.nodes["call"].error
    assert [r["headers"]["Authorization"] for r in allowed.received] == [f"Bearer {SECRET}"]
    _no_secret(json.dumps(ok.nodes["call"].output))
    error = bad.nodes["out"].error
    assert error is not None and error["category"] == "policy_violation"
    assert elsewhere.received == []


@pytest.mark.parametrize("trust", [Trust.TRUSTED, Trust.UNTRUSTED])
async def test_a_trusted_process_routes_untrusted_work_as_untrusted(
    tmp_path: Path, allowed: Listener, trust: Trust
) -> None:
    # One's own process (orchestrion run, retry, resume) running an execution that came in
    # through the service: its attempts get the service's rules.
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\n")
    resources = Resources(enforce.controls_of(Governance.load(policy, trusted=True, environ={})))
    executor = NodeExecutor(default_registry(), resources, secrets={"MINE": SECRET})

    async def attempt(handler: str, config: dict[str, Any]) -> Any:
        task = TaskMessage("e1", "n", 1, handler, config, {}, {}, idempotency_key="k", trust=trust)
        events: list[Any] = []
        await executor.execute(task, lambda _execution, event: events.append(event))
        return events[-1]

    unlisted = await attempt("http", {"url": allowed.url, "headers": {"A": "{{ secrets.MINE }}"}})
    own_url = await attempt("llm", {"prompt": "hi", "base_url": allowed.url + "/v1"})
    if trust is Trust.UNTRUSTED:
        for failed in (unlisted, own_url):
            assert isinstance(failed, NodeFailed), failed
            assert failed.error.category == "policy_violation"
        assert "has no destination" in unlisted.error.message
        assert "may not set base_url" in own_url.error.message
        assert allowed.received == []
    else:
        # Trusted: an unlisted secret goes where the node says; the node's own endpoint is
        # called without any key (here a listener that does not speak chat completions).
        assert isinstance(unlisted, NodeSucceeded), unlisted
        assert isinstance(own_url, NodeFailed) and own_url.error.category == "bad_response"
        assert [r["headers"].get("A") for r in allowed.received] == [SECRET, None]
        assert "Authorization" not in allowed.received[1]["headers"]
