"""The ``llm`` handler (aliases ``llm_service``, ``call_llm_service``): one chat completion.

Providers are the operator's (``governance/llm_providers.py``): each speaks the
OpenAI-compatible ``POST {base_url}/chat/completions`` API (OpenAI, Azure-style gateways,
vLLM, Ollama, LiteLLM...) with its own key from the environment. A node picks one by name
(``provider: NAME``): ``openai`` (from ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` unless the
policy defines it), the policy's ``llm.providers``, ``offline`` (answers deterministically
without any network, so demos and tests need no key), or ``auto`` (``openai`` when its key is
set, else ``offline``). A node's own ``base_url``/``api_key_env`` is refused in untrusted
contexts; in trusted ones a key goes with it only to the origin of the provider it belongs
to (``credential_problems``).

The key is read from the environment at call time; it is never logged and is scrubbed from
error messages.

Governance controls in ``ctx.resources.controls``: ``routing`` (a ``Routing``) holds the
providers and the trust of the process; ``llm_policy`` (an ``LlmPolicy``) checks the
model, ``max_tokens`` and every rendered message before any provider is called, and raises
``PolicyViolation`` (not retried); a node that does not set ``max_tokens`` gets the policy's
cap. With a review threshold (the policy's ``review_below_confidence``, or the node's when
stricter) an output whose confidence is below it, or unknown, is not returned: the node waits
with reason ``review`` and the output in the wait data, and ``Engine.decide`` (the approval
API) completes it with that output or fails it. The confidence is the provider's (mean token
logprob, or a ``confidence`` field of the response), or, with ``confidence_field``, a field of
the model's JSON answer. ``llm_guard`` (``async (model, messages) -> None``) is a further
hook that raises to block; ``url_guard`` (see the ``http`` handler) checks the provider URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from typing import TYPE_CHECKING, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from orchestrion.core.reasons import WaitReason
from orchestrion.errors import ErrorCategory, NodeError, PermanentNodeError, PolicyViolation
from orchestrion.governance.llm_providers import DEFAULT_BASE_URL, Endpoint, LlmProviders, resolve
from orchestrion.governance.secret_routes import ROUTING_KEY, Routing
from orchestrion.handlers.base import HandlerSpec, NodeContext, Wait
from orchestrion.handlers.http import (
    build_http_client,
    display_url,
    get_url_guard,
    pinning_policy,
    status_error,
    transport_error,
)
from orchestrion.handlers.resources import LlmGuard

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_MODEL",
    "SPEC",
    "LlmConfig",
    "LlmGuard",
    "Message",
    "offline_completion",
    "run_llm",
]

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
_PROMPT_SHOWN = 200
_EXCERPT_CHARS = 300

_TRUSTED_PROVIDERS = LlmProviders()  # no governance installed: one's own process


def _default_model() -> str:
    return os.environ.get("ORCHESTRION_LLM_MODEL") or DEFAULT_MODEL


class Message(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class LlmConfig(BaseModel):
    """Config of the ``llm`` handler."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="the user message (give `prompt` or `messages`)")
    messages: list[Message] | None = Field(
        None, description="the chat messages, each a `role` and `content`"
    )
    system: str | None = Field(None, description="a system message put first")
    model: str = Field(
        default_factory=_default_model,
        min_length=1,
        description="the model name (default: the configured default model)",
    )
    temperature: float = Field(default=0.7, ge=0, le=2, description="sampling temperature, 0 to 2")
    max_tokens: int = Field(default=1000, ge=1, description="the longest answer, in tokens")
    # A provider the operator configured (governance/llm_providers.py), offline or auto.
    provider: str = Field(
        default="auto",
        min_length=1,
        pattern=r"^[A-Za-z][A-Za-z0-9_.-]*$",
        description="a provider the operator configured, `offline`, or `auto`",
    )
    # Trusted contexts only, and a key goes with them only to its own provider's origin.
    base_url: str | None = Field(
        None, description="the provider's endpoint (trusted workflows only)"
    )
    api_key_env: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z_]\w*(API_KEY|_TOKEN)$",
        description="the environment variable holding the key, for `base_url`",
    )
    timeout: float = Field(default=60.0, gt=0, description="seconds for the whole call")
    # Governance: a node may ask for more review than the policy (never less), and name
    # the field of its JSON answer that carries the model's own confidence.
    review_below_confidence: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="ask for human review when the model's confidence is below this (0 to 1)",
    )
    confidence_field: str | None = Field(
        default=None,
        min_length=1,
        description="the field of the JSON answer that carries the model's confidence",
    )

    @field_validator("prompt", mode="before")
    @classmethod
    def _stringify_prompt(cls, value: Any) -> Any:
        # A prompt that is exactly one template keeps its native type (a dict, a list):
        # the model reads it as JSON.
        if value is None or isinstance(value, str):
            return value
        return json.dumps(value, ensure_ascii=False, default=str)

    @model_validator(mode="after")
    def _check_prompt(self) -> LlmConfig:
        if self.prompt is None and not self.messages:
            raise ValueError("either 'prompt' or 'messages' is required")
        return self

    @model_validator(mode="after")
    def _provider_url(self, info: ValidationInfo) -> LlmConfig:
        # Without a base_url of the node's own, the chosen provider's, so that a circuit
        # breaker (execution/circuit.py) guards the host the call goes to. Not counted as
        # set by the node: credentials follow model_fields_set.
        if self.base_url is None:
            routing = info.context.get(ROUTING_KEY) if isinstance(info.context, dict) else None
            providers = routing.providers if isinstance(routing, Routing) else _TRUSTED_PROVIDERS
            provider = providers.get("openai" if self.provider == "auto" else self.provider)
            if provider is not None:
                self.__dict__["base_url"] = provider.base_url
        return self

    def chat_messages(self) -> list[dict[str, str]]:
        """System message, then ``messages``, then ``prompt`` as the last user message."""
        chat: list[dict[str, str]] = []
        if self.system:
            chat.append({"role": "system", "content": self.system})
        chat.extend(message.model_dump() for message in self.messages or [])
        if self.prompt is not None:
            chat.append({"role": "user", "content": self.prompt})
        return chat


def _words(text: str) -> int:
    return len(text.split())


def _last_user_text(messages: list[dict[str, str]]) -> str:
    for message in reversed(messages):
        if message["role"] == "user":
            return message["content"]
    return messages[-1]["content"] if messages else ""


def offline_completion(
    model: str, messages: list[dict[str, str]], max_tokens: int
) -> dict[str, Any]:
    """A deterministic stand-in answer: same messages and model, same text and confidence."""
    prompt = _last_user_text(messages)
    shown = prompt if len(prompt) <= _PROMPT_SHOWN else prompt[:_PROMPT_SHOWN] + "..."
    text = f"LLM generated a summary for the prompt '{shown}'"
    finish_reason = "stop"
    words = text.split(" ")
    if len(words) > max_tokens:
        text, finish_reason = " ".join(words[:max_tokens]), "length"
    seed = json.dumps([model, messages], sort_keys=True, ensure_ascii=False).encode("utf-8")
    fraction = int.from_bytes(hashlib.sha256(seed).digest()[:4], "big") / 0xFFFFFFFF
    prompt_tokens = sum(_words(message["content"]) for message in messages)
    completion_tokens = _words(text)
    return {
        "text": text,
        "model": model,
        "finish_reason": finish_reason,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
        "confidence": round(0.80 + 0.19 * fraction, 4),
    }


def _scrub(text: str, key: str) -> str:
    return text.replace(key, "***") if key else text


def _confidence(logprobs: Any) -> float | None:
    """exp(mean token logprob), when the provider returned logprobs."""
    if not isinstance(logprobs, dict):
        return None
    tokens = logprobs.get("content")
    if not isinstance(tokens, list):
        return None
    values = [t["logprob"] for t in tokens if isinstance(t, dict) and "logprob" in t]
    numbers = [float(v) for v in values if isinstance(v, int | float)]
    if not numbers:
        return None
    return round(math.exp(sum(numbers) / len(numbers)), 4)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value <= 1 else None


def _first_known(*values: float | None) -> float | None:
    return next((value for value in values if value is not None), None)


def field_confidence(text: str, path: str) -> float | None:
    """The number at ``path`` (dotted) of the JSON object ``text`` (fences allowed), if any."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    try:
        value: Any = json.loads(body)
    except ValueError:
        return None
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return _number(value)


def _parse_completion(data: Any, config: LlmConfig) -> dict[str, Any]:
    choice = data["choices"][0]
    text = choice["message"].get("content") or ""
    if not isinstance(text, str):
        raise TypeError("message content is not a string")
    usage = data.get("usage") or {}
    prompt_tokens = int(usage.get("prompt_tokens") or 0)
    completion_tokens = int(usage.get("completion_tokens") or 0)
    return {
        "text": text,
        "model": data.get("model") or config.model,
        "finish_reason": choice.get("finish_reason"),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": int(usage.get("total_tokens") or prompt_tokens + completion_tokens),
        },
        "confidence": _first_known(
            _confidence(choice.get("logprobs")),
            _number(choice.get("confidence")),
            _number(data.get("confidence")),
        ),
    }


async def _post(
    client: httpx.AsyncClient,
    url: str,
    payload: dict[str, Any],
    headers: dict[str, str],
    config: LlmConfig,
) -> tuple[httpx.Response, bytes]:
    import httpx

    try:
        response = await client.post(
            url,
            json=payload,
            headers=headers,
            timeout=httpx.Timeout(config.timeout),
            follow_redirects=False,  # never carry the bearer key to another location
        )
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise transport_error("POST", url, exc) from exc
    return response, response.content


def _without_key(error: NodeError, key: str) -> NodeError:
    scrubbed = _scrub(str(error), key)
    if scrubbed == str(error):
        return error
    details = error.details
    if isinstance(details, dict) and isinstance(details.get("body_excerpt"), str):
        details = {**details, "body_excerpt": _scrub(details["body_excerpt"], key)}
    return type(error)(scrubbed, category=error.category, details=details)


async def _openai_completion(
    ctx: NodeContext, config: LlmConfig, messages: list[dict[str, str]], endpoint: Endpoint
) -> dict[str, Any]:
    provider = endpoint.provider
    key = provider.key()
    if provider.api_key_env and not key:
        raise PermanentNodeError(
            f"llm provider '{provider.name}' needs an API key in the environment variable "
            f"{provider.api_key_env}",
            category=ErrorCategory.CONFIG,
        )
    if provider.models and config.model not in provider.models:
        raise PolicyViolation(
            f"model {config.model!r} is not offered by provider '{provider.name}' "
            f"(allowed: {', '.join(provider.models)})"
        )
    url = endpoint.url.rstrip("/") + "/chat/completions"
    await get_url_guard(ctx)(url)
    payload = {
        "model": config.model,
        "messages": messages,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
    }
    headers = {
        **dict(provider.headers),
        **provider.auth_headers(key),
        "Idempotency-Key": ctx.idempotency_key,
    }
    try:
        shared = ctx.resources.http_client()
        if shared is not None:
            response, body = await _post(shared, url, payload, headers, config)
        else:
            async with build_http_client(
                timeout=config.timeout, url_policy=pinning_policy(ctx)
            ) as client:
                response, body = await _post(client, url, payload, headers, config)
        if response.status_code >= 300:
            raise status_error("POST", url, response, body)
    except NodeError as exc:
        # Some providers echo (part of) a rejected key back in the error body.
        raise _without_key(exc, key) from None
    try:
        return _parse_completion(response.json(), config)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        raise PermanentNodeError(
            f"POST {display_url(url)} returned an unexpected chat completion body "
            f"({type(exc).__name__}: {_scrub(str(exc), key)})",
            category=ErrorCategory.BAD_RESPONSE,
        ) from None


def _providers(ctx: NodeContext) -> LlmProviders:
    return ctx.resources.controls.routing.providers


def _endpoint(ctx: NodeContext, config: LlmConfig) -> Endpoint | None:
    """Where the call goes; None for the offline provider (``auto`` without a key)."""
    if config.provider == "offline":
        return None
    endpoint = resolve(config, _providers(ctx))
    # auto: the node's own endpoint when it names one (trusted only), else openai with a key.
    own_url = "base_url" in config.model_fields_set
    if config.provider == "auto" and not own_url and not endpoint.provider.key():
        return None
    return endpoint


async def run_llm(ctx: NodeContext, config: LlmConfig) -> dict[str, Any] | Wait:
    """Run the completion and return text (also as ``response`` and ``result``) and metadata."""
    messages = config.chat_messages()
    controls = ctx.resources.controls
    policy = controls.llm_policy
    if policy.max_tokens is not None and "max_tokens" not in config.model_fields_set:
        config = config.model_copy(update={"max_tokens": min(config.max_tokens, policy.max_tokens)})
    # Every message as rendered: an injection may come in through any input.
    policy.check(config.model, config.max_tokens, [m["content"] for m in messages])
    threshold = policy.effective_threshold(config.review_below_confidence)
    confidence_field = config.confidence_field or policy.confidence_field
    await controls.llm_guard(config.model, messages)
    endpoint = _endpoint(ctx, config)
    if endpoint is None:
        provider = "offline"
        result = offline_completion(config.model, messages, config.max_tokens)
    else:
        provider = endpoint.provider.name
        result = await _openai_completion(ctx, config, messages, endpoint)
    # No rendered value in the line (the model may come from a classified input).
    logger.debug(
        "llm %s for node %s: %s tokens, finish %s",
        provider,
        ctx.node_id,
        result["usage"]["total_tokens"],
        result["finish_reason"],
    )
    text = result["text"]
    confidence = result["confidence"]
    if confidence_field:
        confidence = field_confidence(text, confidence_field)
    output = {
        "text": text,
        "response": text,  # reference 001 reads `.output.response`
        "result": text,  # reference 003 reads `.output.result`
        "model": result["model"],
        "provider": provider,
        "usage": result["usage"],
        "finish_reason": result["finish_reason"],
        "confidence": confidence,
    }
    if threshold is not None and (confidence is None or confidence < threshold):
        shown = "unknown" if confidence is None else f"{confidence:g}"
        return Wait(
            WaitReason.REVIEW,
            data={
                "message": f"LLM output confidence {shown} is below {threshold:g}: review it",
                "confidence": confidence,
                "threshold": threshold,
                "output": output,
            },
        )
    return output


SPEC = HandlerSpec(
    name="llm",
    run=run_llm,
    config_model=LlmConfig,
    aliases=("llm_service", "call_llm_service"),
    description="Chat completion: OpenAI-compatible API (key from the environment) or a "
    "deterministic offline provider for demos and tests.",
    fixed_keys=frozenset({"review_below_confidence", "confidence_field"}),
)
