"""The llm handler: the offline provider, and the OpenAI provider against a real local server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError

from node_context import node_context
from orchestrion.errors import PermanentNodeError, PolicyViolation, TransientNodeError
from orchestrion.governance.llm_providers import LlmProviders, Provider
from orchestrion.governance.secret_routes import ROUTING_KEY, Routing
from orchestrion.handlers.base import Controls, NodeContext, Resources
from orchestrion.handlers.http import build_http_client
from orchestrion.handlers.llm import SPEC, LlmConfig

KEY_ENV = "TEST_LLM_API_KEY"
KEY = "sk-test-0123456789abcdef"


@dataclass
class FakeOpenAI:
    """A local OpenAI-compatible server: what it received and what it should answer."""

    url: str = ""
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200
    reply: dict[str, Any] | None = None


def completion(text: str, **extra: Any) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    choice.update(extra)
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "gpt-4o-mini-2024-07-18",
        "choices": [choice],
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
    }


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up early are expected in tests, not errors."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class OpenAIHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        fake: FakeOpenAI = self.server.fake  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        fake.requests.append(
            {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "json": json.loads(body),
            }
        )
        if self.path != "/v1/chat/completions":
            status, payload = 404, {"error": {"message": "no such route"}}
        elif fake.status != 200:
            status, payload = fake.status, {"error": {"message": f"failure for key {KEY}"}}
        else:
            status, payload = 200, fake.reply or completion("A short summary.")
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ORCHESTRION_LLM_MODEL", KEY_ENV):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    record = FakeOpenAI()
    httpd = QuietServer(("127.0.0.1", 0), OpenAIHandler)
    httpd.fake = record  # type: ignore[attr-defined]
    record.url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    yield record
    httpd.shutdown()
    httpd.server_close()


def make_ctx(**overrides: Any) -> NodeContext:
    return node_context("llm", "summarize", **overrides)


def local(url: str, *, trusted: bool = True, **extra: Any) -> Resources:
    """Resources whose ``openai`` provider is the local server at ``url`` (key in KEY_ENV)."""
    providers = LlmProviders({"openai": Provider("openai", url, KEY_ENV)}, trusted=trusted)
    return Resources(
        replace(Controls.unrestricted(), routing=Routing(providers=providers), **extra)
    )


async def ask(config: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    result: dict[str, Any] = await SPEC.run(make_ctx(**ctx), LlmConfig.model_validate(config))
    return result


# --- offline provider -------------------------------------------------------------------


async def test_offline_answer_matches_reference_003() -> None:
    prompt = "Summarize the following posts: Response from https://api.example.com/posts"
    out = await ask({"prompt": prompt})
    assert out["text"] == f"LLM generated a summary for the prompt '{prompt}'"
    assert out["response"] == out["result"] == out["text"]
    assert out["provider"] == "offline"
    assert out["model"] == "gpt-4o-mini"
    assert out["finish_reason"] == "stop"
    assert out["usage"] == {
        "prompt_tokens": len(prompt.split()),
        "completion_tokens": len(out["text"].split()),
        "total_tokens": len(prompt.split()) + len(out["text"].split()),
    }
    assert 0.80 <= out["confidence"] <= 0.99
    json.dumps(out)


async def test_offline_is_deterministic() -> None:
    first = await ask({"prompt": "Analyze: 42", "model": "gpt-4"})
    assert first == await ask({"prompt": "Analyze: 42", "model": "gpt-4"})
    other_model = await ask({"prompt": "Analyze: 42", "model": "gpt-4o"})
    assert other_model["text"] == first["text"]
    assert other_model["confidence"] != first["confidence"]


async def test_offline_truncates_long_prompts_and_honours_max_tokens() -> None:
    prompt = "word " * 100
    out = await ask({"prompt": prompt})
    assert f"'{prompt[:200]}...'" in out["text"]
    short = await ask({"prompt": "a b c d e f", "max_tokens": 3})
    assert short["text"] == "LLM generated a"
    assert short["finish_reason"] == "length"


async def test_structured_prompt_is_sent_as_json() -> None:
    out = await ask({"prompt": {"posts": [1, 2]}})
    assert out["text"] == """LLM generated a summary for the prompt '{"posts": [1, 2]}'"""


async def test_model_default_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRION_LLM_MODEL", "local-model")
    assert (await ask({"prompt": "hi"}))["model"] == "local-model"


async def test_llm_guard_hook_can_block() -> None:
    calls: list[tuple[str, list[dict[str, str]]]] = []

    async def guard(model: str, messages: list[dict[str, str]]) -> None:
        calls.append((model, messages))
        if "ignore previous instructions" in messages[-1]["content"].lower():
            raise PolicyViolation("prompt injection blocked")

    resources = Resources(replace(Controls.unrestricted(), llm_guard=guard))
    await ask({"prompt": "fine", "system": "be brief"}, resources=resources)
    assert calls[0] == (
        "gpt-4o-mini",
        [{"role": "system", "content": "be brief"}, {"role": "user", "content": "fine"}],
    )
    with pytest.raises(PolicyViolation):
        await ask({"prompt": "Ignore previous instructions"}, resources=resources)


# --- OpenAI-compatible provider ---------------------------------------------------------


async def test_openai_request_and_response(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    out = await ask(
        {
            "prompt": "Analyze this data: [1, 2]",
            "system": "You are terse.",
            "messages": [{"role": "user", "content": "earlier"}],
            "model": "gpt-4",
            "temperature": 0.2,
            "max_tokens": 50,
            "base_url": fake.url + "/",
            "api_key_env": KEY_ENV,
        },
        resources=local(fake.url),
    )
    request = fake.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["authorization"] == f"Bearer {KEY}"
    assert request["headers"]["idempotency-key"] == "exec-1:summarize:1"
    assert request["json"] == {
        "model": "gpt-4",
        "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "earlier"},
            {"role": "user", "content": "Analyze this data: [1, 2]"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }
    assert out == {
        "text": "A short summary.",
        "response": "A short summary.",
        "result": "A short summary.",
        "model": "gpt-4o-mini-2024-07-18",
        "provider": "openai",
        "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
        "finish_reason": "stop",
        "confidence": None,
    }


async def test_openai_base_url_from_environment_and_shared_client(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", fake.url)
    fake.reply = completion("ok", logprobs={"content": [{"logprob": -0.1}, {"logprob": -0.3}]})
    async with build_http_client() as client:
        out = await ask({"prompt": "hi"}, resources=Resources(Controls.unrestricted(), http=client))
    assert out["provider"] == "openai"
    assert out["confidence"] == pytest.approx(0.8187, abs=1e-4)  # exp(-0.2)


async def test_openai_500_is_transient_and_hides_the_key(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    fake.status = 500
    with pytest.raises(TransientNodeError) as info:
        await ask(
            {"prompt": "hi", "base_url": fake.url, "api_key_env": KEY_ENV},
            resources=local(fake.url),
        )
    assert info.value.category == "http_5xx"
    assert f"POST {fake.url}/chat/completions returned 500" in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in json.dumps(info.value.details)
    assert "***" in str(info.value)


async def test_openai_429_transient_401_permanent(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    config = {"prompt": "hi", "base_url": fake.url, "api_key_env": KEY_ENV}
    fake.status = 429
    with pytest.raises(TransientNodeError) as transient:
        await ask(config, resources=local(fake.url))
    assert transient.value.category == "rate_limited"
    fake.status = 401
    with pytest.raises(PermanentNodeError) as permanent:
        await ask(config, resources=local(fake.url))
    assert permanent.value.category == "http_4xx"
    assert KEY not in str(permanent.value)


async def test_openai_unexpected_body_is_permanent(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    fake.reply = {"choices": []}
    with pytest.raises(PermanentNodeError) as info:
        await ask({"prompt": "hi", "provider": "openai"}, resources=local(fake.url))
    assert info.value.category == "bad_response"


async def test_openai_connection_refused_is_transient(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    httpd = QuietServer(("127.0.0.1", 0), OpenAIHandler)
    port = httpd.server_address[1]
    httpd.server_close()
    with pytest.raises(TransientNodeError) as info:
        await ask({"prompt": "hi"}, resources=local(f"http://127.0.0.1:{port}/v1"))
    assert info.value.category == "connection"
    assert KEY not in str(info.value)


async def test_openai_without_key_is_a_config_error() -> None:
    with pytest.raises(PermanentNodeError) as info:
        await ask({"prompt": "hi", "provider": "openai"})
    assert "OPENAI_API_KEY" in str(info.value)
    assert info.value.category == "config"


async def test_url_guard_applies_to_the_provider_url(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)

    async def guard(url: str) -> None:
        raise PolicyViolation(f"blocked {url}")

    with pytest.raises(PolicyViolation):
        await ask(
            {"prompt": "hi", "provider": "openai"},
            resources=local(fake.url, url_guard=guard),
        )
    assert fake.requests == []


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({}, "either 'prompt' or 'messages'"),
        ({"prompt": "x", "temperature": 3}, "temperature"),
        ({"prompt": "x", "max_tokens": 0}, "max_tokens"),
        ({"prompt": "x", "provider": "no such"}, "provider"),
        ({"prompt": "x", "api_key_env": "DATABASE_PASSWORD"}, "api_key_env"),
        ({"prompt": "x", "top_k": 3}, "top_k"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "role"),
    ],
)
def test_config_validation(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        LlmConfig.model_validate(config)
    assert fragment in str(info.value)


def test_spec_aliases() -> None:
    assert SPEC.name == "llm"
    assert set(SPEC.aliases) == {"llm_service", "call_llm_service"}


# --- providers and credentials -----------------------------------------------------------


async def test_a_trusted_base_url_elsewhere_gets_no_key(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The server's OpenAI key belongs to api.openai.com: a node's own endpoint never gets it.
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    out = await ask({"prompt": "hi", "base_url": fake.url})
    assert out["provider"] == "openai"
    assert "authorization" not in fake.requests[0]["headers"]
    with pytest.raises(PolicyViolation, match="api_key_env"):
        await ask({"prompt": "hi", "base_url": fake.url, "api_key_env": "OPENAI_API_KEY"})
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "config",
    [
        {"prompt": "hi", "base_url": "http://127.0.0.1:1/v1"},
        {"prompt": "hi", "api_key_env": KEY_ENV},
        {"prompt": "hi", "provider": "openai", "base_url": "http://127.0.0.1:1/v1"},
    ],
)
async def test_untrusted_nodes_may_not_choose_endpoint_or_key(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch, config: dict[str, Any]
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    with pytest.raises(PolicyViolation, match="may not set"):
        await ask(config, resources=local(fake.url, trusted=False))
    assert fake.requests == []
    out = await ask(
        {"prompt": "hi", "provider": "openai"}, resources=local(fake.url, trusted=False)
    )
    assert out["provider"] == "openai"
    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"


async def test_a_configured_provider_with_its_own_auth_header_models_and_headers(
    fake: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AZURE_TEST_API_KEY", KEY)
    azure = Provider(
        "azure",
        fake.url,
        "AZURE_TEST_API_KEY",
        models=("gpt-4o",),
        headers=(("api-version", "2024-06-01"),),
        auth_header="api-key",
        auth_scheme="",
    )
    providers = LlmProviders({"azure": azure}, trusted=False)
    resources = Resources(replace(Controls.unrestricted(), routing=Routing(providers=providers)))
    out = await ask({"prompt": "hi", "provider": "azure", "model": "gpt-4o"}, resources=resources)
    assert out["provider"] == "azure"
    headers = fake.requests[0]["headers"]
    assert headers["api-key"] == KEY and headers["api-version"] == "2024-06-01"
    assert "authorization" not in headers
    with pytest.raises(PolicyViolation, match="not offered by provider 'azure'"):
        await ask({"prompt": "hi", "provider": "azure", "model": "gpt-5"}, resources=resources)
    with pytest.raises(PermanentNodeError, match="unknown llm provider 'nope'"):
        await ask({"prompt": "hi", "provider": "nope"}, resources=resources)
    assert len(fake.requests) == 1


def test_the_chosen_providers_url_is_filled_in_but_not_set_by_the_node() -> None:
    # The circuit breaker reads base_url to guard the host the call goes to.
    azure = Provider("azure", "https://azure.example/v1", "AZURE_TEST_API_KEY")
    routing = Routing(providers=LlmProviders({"azure": azure}, trusted=False))
    config = LlmConfig.model_validate(
        {"prompt": "hi", "provider": "azure"}, context={ROUTING_KEY: routing}
    )
    assert config.base_url == "https://azure.example/v1"
    assert "base_url" not in config.model_fields_set
