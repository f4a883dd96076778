"""Where each secret may be sent: the policy's ``secrets`` section, and its check per request.

::

    secrets:
      GITHUB_TOKEN:
        hosts: [api.github.com]            # a host (any port), host:port, *.domain, https://host
      SEARCH_KEY:
        providers: [openai]                # the origin of a configured llm provider

``Routing`` carries that section, the llm providers and whether the context is trusted. A
secret the section lists may go only to its destinations; one it does not list may go
anywhere in a trusted context (one's own file) and nowhere in an untrusted one (the
service). ``problem(name, url)`` is the one rule; the definition check applies it when the
destination is written out, and the http handler applies it to every request and redirect
hop, before connecting, through ``check_destination`` (the executor says which secrets the
attempt's request carries with ``sending``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from orchestrion.errors import PolicyViolation
from orchestrion.governance.llm_providers import LlmProviders, credential_problems, origin_of

__all__ = [
    "ROUTING_KEY",
    "Destination",
    "Routing",
    "SecretRouteSection",
    "carrying_secrets",
    "check_destination",
    "sending",
]

ROUTING_KEY = "secret_routing"
"""Where a node config's validation context holds the ``Routing`` its checks apply."""


@dataclass(frozen=True, slots=True)
class Destination:
    """One allowed destination: a host (``*.`` for its subdomains), maybe a scheme and port."""

    host: str
    port: int | None = None
    scheme: str | None = None

    @classmethod
    def parse(cls, text: str) -> Destination:
        entry = text.strip().lower()
        scheme: str | None = None
        if "://" in entry:
            scheme, _, entry = entry.partition("://")
            if scheme not in ("http", "https"):
                raise ValueError(f"destination {text!r}: scheme must be http or https")
            entry = entry.rstrip("/")
        host, port = entry, None
        if entry.startswith("["):  # [::1]:8443
            close = entry.find("]")
            host, rest = entry[1:close], entry[close + 1 :]
            if rest:
                port = _port(text, rest.removeprefix(":"))
        elif entry.count(":") == 1:
            host, _, number = entry.partition(":")
            port = _port(text, number)
        bare = host.removeprefix("*.")
        if not bare or "/" in host or "*" in bare or " " in host:
            raise ValueError(f"destination {text!r} is not a host, host:port or scheme://host")
        return cls(host, port, scheme)

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if self.scheme is not None and scheme != self.scheme:
            return False
        if self.port is not None and port != self.port:
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host

    def __str__(self) -> str:
        text = f"[{self.host}]" if ":" in self.host else self.host
        if self.port is not None:
            text += f":{self.port}"
        return f"{self.scheme}://{text}" if self.scheme else text


def _port(text: str, number: str) -> int:
    if not number.isdigit() or not 0 < int(number) < 65536:
        raise ValueError(f"destination {text!r} has an invalid port")
    return int(number)


class SecretRouteSection(BaseModel):
    """One secret of the policy's ``secrets`` section: where it may be sent."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    # Factories are lambdas, not list or dict: pydantic reads a factory's signature as the
    # model is built, and a builtin's means parsing its text signature (a few ms per start).
    hosts: list[str] = Field(default_factory=lambda: [])
    providers: list[str] = Field(default_factory=lambda: [])

    @field_validator("hosts")
    @classmethod
    def _hosts_parse(cls, value: list[str]) -> list[str]:
        for entry in value:
            Destination.parse(entry)
        return value


@dataclass(frozen=True)
class Routing:
    """The secrets section, the llm providers and the trust of the context they apply to."""

    routes: Mapping[str, SecretRouteSection] = field(default_factory=lambda: {})
    providers: LlmProviders = field(default_factory=LlmProviders)

    @property
    def trusted(self) -> bool:
        """The one trust flag every rule here and in ``credential_problems`` reads."""
        return self.providers.trusted

    def with_trust(self, trusted: bool) -> Routing:
        """The same routes and providers, applied to a context of the given trust."""
        if trusted == self.trusted:
            return self
        return replace(self, providers=replace(self.providers, trusted=trusted))

    def destinations(self, name: str) -> list[Destination] | None:
        """Where secret ``name`` may go; None when the policy does not list it."""
        route = self.routes.get(name)
        if route is None:
            return None
        found = [Destination.parse(entry) for entry in route.hosts]
        for provider_name in route.providers:
            provider = self.providers.get(provider_name)
            origin = provider.origin if provider is not None else None
            if origin is not None:
                found.append(Destination(origin[1], origin[2], origin[0]))
        return found

    def unroutable(self, name: str) -> str | None:
        """Why secret ``name`` may be sent nowhere at all, or None."""
        if self.trusted or name in self.routes:
            return None
        return (
            f"secret '{name}' has no destination in the governance policy (secrets.{name}): "
            "the service sends a secret only where the policy allows"
        )

    def problem(self, name: str, url: str) -> str | None:
        """Why secret ``name`` may not be sent to ``url``, or None when it may."""
        nowhere = self.unroutable(name)
        if nowhere is not None:
            return nowhere
        allowed = self.destinations(name)
        if allowed is None:
            return None  # trusted, and the policy does not restrict it
        origin = origin_of(url)
        if origin is not None and any(d.matches(*origin) for d in allowed):
            return None
        host = origin[1] if origin is not None else "an unparseable URL"
        shown = ", ".join(str(d) for d in allowed) or "nowhere"
        return f"secret '{name}' may not be sent to {host} (policy secrets.{name} allows: {shown})"

    def credential_problems(self, config: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(field, message) for each way an llm ``config`` pairs a credential with its own
        endpoint, under these providers (``llm_providers.credential_problems``)."""
        return credential_problems(config, self.providers)

    def provider_names(self) -> list[str]:
        """The llm providers a node may name."""
        return self.providers.names()

    def check(self, names: Iterable[str], url: str) -> None:
        for name in sorted(names):
            reason = self.problem(name, url)
            if reason is not None:
                raise PolicyViolation(reason)


@dataclass(frozen=True, slots=True)
class _InFlight:
    names: frozenset[str]
    routing: Routing


_IN_FLIGHT: ContextVar[_InFlight | None] = ContextVar("orchestrion_secrets_sent", default=None)


@contextlib.contextmanager
def sending(names: frozenset[str], routing: Routing) -> Iterator[None]:
    """Within the block, the request being built carries the secrets ``names``."""
    if not names:
        yield
        return
    token = _IN_FLIGHT.set(_InFlight(names, routing))
    try:
        yield
    finally:
        _IN_FLIGHT.reset(token)


def carrying_secrets() -> bool:
    """Whether the request being built carries secrets (its errors must not quote it)."""
    return _IN_FLIGHT.get() is not None


def check_destination(url: str) -> None:
    """Raise ``PolicyViolation`` when the secrets of this request may not go to ``url``."""
    flight = _IN_FLIGHT.get()
    if flight is not None:
        flight.routing.check(flight.names, url)
