"""No oracle on a secret's value: real runs on SQLite, a real executor, loopback listeners.

Templates that compute with a secret are refused at submission and by trigger-time
override, and an attempt of a definition stored before the rule fails as a policy violation
before it renders: the listener receives nothing, and neither the secret nor an encoding of
it reaches an error, an event or the SQLite file. Direct interpolations reach the listener.
An llm provider that echoes its Authorization header into the answer leaves the key out of
the node's output.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from loopback_listener import Listener, serve_listener, serving
from orchestrion.core.events import NodeFailed, NodeSucceeded
from orchestrion.core.states import ExecutionStatus
from orchestrion.dispatch.base import TaskMessage
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError
from orchestrion.execution import enforce
from orchestrion.execution.executor import NodeExecutor
from orchestrion.governance.runtime import Governance
from orchestrion.governance.secret_logs import scrub_logs
from orchestrion.governance.trust import Trust
from orchestrion.handlers.base import Controls, Resources
from orchestrion.handlers.registry import default_registry

SECRET = "Tok3n-Oracle-S3cret-42"
PROVIDER_KEY = "sk-echoed-provider-key-5d1Xz8"


def _encodings(value: str) -> list[str]:
    raw = value.encode()
    number = int.from_bytes(raw, "big")
    return [value, value[::-1], value.lower(), value.upper(), raw.hex(), str(number),
            f"{number:x}", value[1:], value[:-1]]  # fmt: skip


LEAKS = _encodings(SECRET)

ATTACKS = [
    "{{ {}[secrets.TOKEN.encode().hex()|int(base=16)] }}",
    "{{ {}[secrets.TOKEN[3]] ~ 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789' }}",
    "{{ (1/0) if secrets.TOKEN < 'U' else {}.x }}",
    "{% set x = secrets.TOKEN %}{{ {}[x] }}",
    "{{ {}[secrets.TOKEN|length] }}",
    "{% macro m(s) %}{{ {}[s] }}{% endmacro %}{{ m(secrets.TOKEN) }}",
]


@pytest.fixture
def allowed() -> Iterator[Listener]:
    yield from serve_listener()


@pytest.fixture
def governance(tmp_path: Path, allowed: Listener, monkeypatch: pytest.MonkeyPatch) -> Governance:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRION_SECRET_TOKEN", SECRET)
    policy = tmp_path / "governance.yaml"
    policy.write_text(f"version: 1\nsecrets:\n  TOKEN:\n    hosts: ['127.0.0.1:{allowed.port}']\n")
    return Governance.load(policy, trusted=False, environ={})


def _no_leak(text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for value in LEAKS:
        assert value.encode() not in data, value


def _stored(tmp_path: Path) -> bytes:
    return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))


def _http(url: str, **config: Any) -> dict[str, Any]:
    config = {"url": url, "method": "POST", **config}
    return {"id": "call", "handler": "http", "dependencies": ["input"],
            "retry": {"max_attempts": 1}, "config": config}  # fmt: skip


def _flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "oracle", "dag": {"nodes": [{"id": "input", "handler": "input"}, *nodes]}}


async def test_attacks_are_refused_and_interpolations_arrive(
    tmp_path: Path, governance: Governance, allowed: Listener
) -> None:
    async with Engine(f"sqlite:///{tmp_path / 's.db'}", governance=governance) as engine:
        for template in ATTACKS:
            for config in ({"headers": {"X-T": template}}, {"json": {"t": template}},
                           {"body": template}):  # fmt: skip
                with pytest.raises(DefinitionError) as info:
                    await engine.submit(_flow(_http(allowed.url, **config)))
                [issue] = info.value.issues
                assert issue.node == "call" and issue.code == "secret_field"
                assert issue.field.startswith(f"config.{next(iter(config))}")
                assert "{{ secrets.NAME }}" in issue.message
        # A trigger-time override cannot bring one either.
        plain = _http(allowed.url, headers={"A": "x"})
        definition = await engine.submit(_flow(plain))
        record, _ = await engine.create_execution(definition.id)
        with pytest.raises(DefinitionError) as info:
            await engine.trigger(record.id, {}, {"call": {"headers": {"X-T": ATTACKS[0]}}})
        assert [(i.node, i.field) for i in info.value.issues] == [("call", "config.headers.X-T")]

        legit = _http(
            allowed.url + "/ok",
            headers={
                "Authorization": "Bearer {{ secrets.TOKEN }}",
                "X-K": "{{ secrets['TOKEN'] }}",
            },
            json={
                "token": "{{ secrets.TOKEN }}",
                "pair": "{{ secrets.TOKEN }}:{{ secrets.TOKEN }}",
            },
        )
        result = await engine.run(_flow(legit), timeout=30)
        events = await engine.store.list_events(result.execution_id)
        body = _http(allowed.url + "/form", body="secret={{ secrets.TOKEN }}&x=1")
        form = await engine.run(_flow(body), timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.nodes["call"].error
    assert form.status is ExecutionStatus.COMPLETED, form.nodes["call"].error
    first, second = allowed.received
    assert first["headers"]["Authorization"] == f"Bearer {SECRET}"
    assert first["headers"]["X-K"] == SECRET
    assert json.loads(first["body"]) == {"token": SECRET, "pair": f"{SECRET}:{SECRET}"}
    assert second["body"] == f"secret={SECRET}&x=1"
    _no_leak(json.dumps(result.nodes["call"].output))
    _no_leak(json.dumps([dataclasses.asdict(e) for e in events], default=str))
    _no_leak(_stored(tmp_path))


@pytest.mark.parametrize("template", ATTACKS)
async def test_a_stored_old_style_template_fails_before_it_renders(
    template: str, allowed: Listener
) -> None:
    # A definition stored under an older policy reaches a worker as it is.
    executor = NodeExecutor(
        default_registry(), Resources(Controls.unrestricted()), secrets={"TOKEN": SECRET}
    )
    config = {"url": allowed.url, "headers": {"X-T": template}}
    task = TaskMessage("e1", "call", 1, "http", config, {}, {}, idempotency_key="k")
    events: list[Any] = []
    await executor.execute(task, lambda _execution, event: events.append(event))
    failed = events[-1]
    assert isinstance(failed, NodeFailed), failed
    assert failed.error.category == "policy_violation"
    assert "config.headers.X-T" in failed.error.message
    assert "template error" not in failed.error.message  # nothing rendered
    assert allowed.received == []
    _no_leak(json.dumps(dataclasses.asdict(failed), default=str))


class _EchoingProvider(BaseHTTPRequestHandler):
    """A chat-completions server that answers with the Authorization header it was sent."""

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        text = f"Authorization: {self.headers.get('Authorization')}"
        data = json.dumps({
            "choices": [{"message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "model": "m", "usage": {"prompt_tokens": 1, "completion_tokens": 1},
            "echo": dict(self.headers.items()),
        }).encode()  # fmt: skip
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def provider() -> Iterator[str]:
    with serving(_EchoingProvider, poll=0.05) as url:
        yield url


async def test_an_echoing_provider_leaves_its_key_out_of_the_output(
    tmp_path: Path, provider: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOCAL_LLM_API_KEY", PROVIDER_KEY)
    policy = tmp_path / "governance.yaml"
    policy.write_text(
        "version: 1\nllm:\n  providers:\n    local:\n"
        f"      base_url: {provider}/v1\n      api_key_env: LOCAL_LLM_API_KEY\n"
    )
    governance = Governance.load(policy, trusted=False, environ={})
    resources = Resources(enforce.controls_of(governance))
    executor = NodeExecutor(default_registry(), resources)
    config = {"prompt": "hi", "provider": "local", "model": "m"}
    task = TaskMessage(
        "e1", "ask", 1, "llm", config, {}, {}, idempotency_key="k", trust=Trust.UNTRUSTED
    )
    events: list[Any] = []
    await executor.execute(task, lambda _execution, event: events.append(event))
    done = events[-1]
    assert isinstance(done, NodeSucceeded), done
    text = json.dumps(dataclasses.asdict(done), default=str)
    assert "Bearer ***" in text
    for value in (PROVIDER_KEY, PROVIDER_KEY[::-1], PROVIDER_KEY.encode().hex()):
        assert value not in text
    # And the process's log records, as a library logging the response headers would, in a
    # process that scrubs its logs (the CLI's and the server's: settings.claim_process).
    scrub_logs()
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("httpcore.test").debug("headers: Authorization: Bearer %s", PROVIDER_KEY)
    assert caplog.records[-1].getMessage() == "headers: Authorization: Bearer ***"
