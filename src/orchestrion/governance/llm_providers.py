"""LLM providers: the endpoints the ``llm`` handler may call and the credential each one uses.

A provider is the operator's configuration, never a workflow's: the policy's
``llm.providers`` section names each one (base URL, the environment variable holding its
key, optional model list and extra headers). Two more are always there: ``offline`` (the
deterministic built-in provider, no network) and, unless the policy defines its own,
``openai``, built from the environment as before (``OPENAI_BASE_URL``, default
``https://api.openai.com/v1``, and the key in ``OPENAI_API_KEY``). A node chooses one by name
(``provider: NAME``; ``auto`` is ``openai`` when its key is set, else ``offline``).

A credential is only ever sent to the origin (scheme, host, port) of the provider it belongs
to. ``credential_problems`` is the one rule for a node's own ``base_url`` and
``api_key_env``: refused outright in untrusted contexts (the service); in trusted ones
(``orchestrion run``, the Python API) ``base_url`` may point elsewhere, and then the request
carries a key only when that origin is a configured provider's (its key, and a node's
``api_key_env`` must name that same variable).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrion.errors import ErrorCategory, PermanentNodeError, PolicyViolation
from orchestrion.governance.policy_secrets import check_headers, check_url

__all__ = [
    "BUILT_IN",
    "DEFAULT_BASE_URL",
    "Endpoint",
    "LlmProviders",
    "Provider",
    "ProviderSection",
    "check_provider_names",
    "credential_problems",
    "origin_of",
    "resolve",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BUILT_IN = ("auto", "offline")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PROVIDER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]*$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")

Origin = tuple[str, str, int]


def origin_of(url: str) -> Origin | None:
    """(scheme, host, port) of an absolute http(s) URL, None when it is not one."""
    import httpx

    try:
        parsed = httpx.URL(url.strip())
    except (httpx.InvalidURL, TypeError):
        return None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return None
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    return parsed.scheme, parsed.host.lower(), port


def _absolute_url(value: str) -> str:
    if origin_of(value) is None:
        raise ValueError(f"base_url must be an absolute http:// or https:// URL, got {value!r}")
    return value.strip()


class ProviderSection(BaseModel):
    """One provider of the policy's ``llm.providers``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: str
    api_key_env: str | None = None  # none: the provider takes no key (a local server)
    models: list[str] = Field(default_factory=lambda: [])  # empty: any (llm.allowed_models holds)
    # Sent as they are; a credential here is refused (governance/policy_secrets.py).
    headers: dict[str, str] = Field(default_factory=lambda: {})
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"  # "": the header carries the key alone (api-key: KEY)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return check_url(
            _absolute_url(value),
            "put the provider's key in an environment variable and name it with api_key_env",
        )

    @field_validator("api_key_env")
    @classmethod
    def _env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(f"not an environment variable name: {value!r}")
        return value

    @field_validator("headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in [*value, "x"]:
            if not _HEADER_NAME.match(name):
                raise ValueError(f"not an HTTP header name: {name!r}")
        return check_headers(value)


def check_provider_names(providers: Mapping[str, ProviderSection]) -> None:
    """Raise ``ValueError`` for a provider name that is malformed or built in."""
    for name in providers:
        if name in BUILT_IN:
            raise ValueError(f"provider name {name!r} is built in; choose another")
        if not _PROVIDER_NAME.match(name):
            raise ValueError(f"provider name {name!r} must start with a letter")


@dataclass(frozen=True, slots=True)
class Provider:
    """A provider as the llm handler uses it."""

    name: str
    base_url: str
    api_key_env: str | None
    models: tuple[str, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"

    @property
    def origin(self) -> Origin | None:
        return origin_of(self.base_url)

    def key(self) -> str:
        """The credential, read from the environment at call time ("" when unset)."""
        return os.environ.get(self.api_key_env, "") if self.api_key_env else ""

    def auth_headers(self, key: str) -> dict[str, str]:
        if not key:
            return {}
        return {self.auth_header: f"{self.auth_scheme} {key}" if self.auth_scheme else key}


def _implicit_openai() -> Provider:
    return Provider(
        "openai", os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL, "OPENAI_API_KEY"
    )


@dataclass(frozen=True)
class LlmProviders:
    """The providers of one policy; ``trusted`` is the context's (see the module docstring)."""

    configured: Mapping[str, Provider] = field(default_factory=lambda: {})
    trusted: bool = True

    @classmethod
    def from_sections(
        cls, sections: Mapping[str, ProviderSection], *, trusted: bool = True
    ) -> LlmProviders:
        providers = {
            name: Provider(
                name,
                section.base_url,
                section.api_key_env,
                tuple(section.models),
                tuple(section.headers.items()),
                section.auth_header,
                section.auth_scheme,
            )
            for name, section in sections.items()
        }
        return cls(providers, trusted)

    def names(self) -> list[str]:
        return sorted({*BUILT_IN, "openai", *self.configured})

    def get(self, name: str) -> Provider | None:
        """The provider called ``name`` (``openai`` falls back to the environment's)."""
        found = self.configured.get(name)
        if found is None and name == "openai":
            return _implicit_openai()
        return found

    def every(self) -> list[Provider]:
        providers = list(self.configured.values())
        if "openai" not in self.configured:
            providers.append(_implicit_openai())
        return providers

    def at_origin(self, url: str, prefer: str | None = None) -> Provider | None:
        """The provider whose base URL has the origin of ``url`` (``prefer``'s first)."""
        origin = origin_of(url)
        if origin is None:
            return None
        matches = [p for p in self.every() if p.origin == origin]
        for provider in matches:
            if provider.name == prefer:
                return provider
        return matches[0] if matches else None


def credential_problems(
    config: Mapping[str, Any], providers: LlmProviders
) -> list[tuple[str, str]]:
    """(field, message) for each way an llm config pairs a credential with its own endpoint.

    ``config`` holds the keys the node sets (raw or validated). Untrusted: ``base_url`` and
    ``api_key_env`` are refused whatever their value. Trusted: ``api_key_env`` must be the
    key of the provider at the endpoint (the node's ``base_url`` or the named provider's).
    Templates in these fields are refused too: their value is not known before the run.
    """
    problems: list[tuple[str, str]] = []
    base_url = config.get("base_url")
    key_env = config.get("api_key_env")
    if not providers.trusted:
        hint = "choose a provider the operator configured (provider: NAME, policy llm.providers)"
        if base_url is not None:
            problems.append(("base_url", f"an llm node may not set base_url here: {hint}"))
        if key_env is not None:
            problems.append(("api_key_env", f"an llm node may not set api_key_env here: {hint}"))
        return problems
    if key_env is None:
        return problems
    named = config.get("provider")
    if not isinstance(named, str) or named == "auto":
        named = "openai"
    if isinstance(base_url, str):
        match = providers.at_origin(base_url, prefer=named)
        where = f"base_url {base_url!r}"
    else:
        match = providers.get(named)
        where = f"provider {named!r}"
    if match is None or match.api_key_env != key_env:
        expected = f" (its key is {match.api_key_env})" if match and match.api_key_env else ""
        problems.append(
            (
                "api_key_env",
                f"api_key_env {key_env!r} is not the key of {where}{expected}: a key is only "
                "sent to the provider it belongs to (policy llm.providers)",
            )
        )
    return problems


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one llm call goes: the provider, its URL, its key variable, its headers."""

    provider: Provider
    url: str
    api_key_env: str | None


def resolve(config: Any, providers: LlmProviders) -> Endpoint:
    """The endpoint of a validated ``LlmConfig`` whose provider is not ``offline``.

    Raises ``PolicyViolation`` for a credential paired with the node's own endpoint and
    ``PermanentNodeError`` (config) for an unknown provider.
    """
    fields = {name: getattr(config, name) for name in config.model_fields_set}
    problems = credential_problems(fields, providers)
    if problems:
        raise PolicyViolation("; ".join(f"{name}: {message}" for name, message in problems))
    name = "openai" if config.provider == "auto" else config.provider
    provider = providers.get(name)
    if provider is None:
        raise PermanentNodeError(
            f"unknown llm provider {name!r} (configured: {', '.join(providers.names())})",
            category=ErrorCategory.CONFIG,
        )
    base_url = fields.get("base_url")  # the node's own: set by it, not filled in
    if not isinstance(base_url, str):
        return Endpoint(provider, provider.base_url, provider.api_key_env)
    # A trusted node's own endpoint: the key and headers of the provider at that origin,
    # if there is one; otherwise nothing of any provider goes with the request.
    match = providers.at_origin(base_url, prefer=provider.name)
    if match is not None:
        return Endpoint(match, base_url, match.api_key_env)
    return Endpoint(Provider(provider.name, base_url, None), base_url, None)
