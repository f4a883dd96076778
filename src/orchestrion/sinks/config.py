"""The event sinks an operator configures (``ORCHESTRION_SINKS_FILE`` or ``ORCHESTRION_SINKS``).

A YAML or JSON document::

    sinks:
      - name: ops-hook                 # letters, digits, . _ -; what notices address (sink:NAME)
        type: webhook                  # webhook | redis_stream | nats | kafka
        url: https://ops.example.com/orchestrion
        secret_env: OPS_HOOK_SECRET    # signs each request (HMAC-SHA256); never in this file
        events: ["execution.*", "node.failed"]   # glob patterns; default: every event
    delivery:
      attempts: 8                      # then the event is a dead letter for that sink
      initial_backoff: 1s
      max_backoff: 5m

Secrets are named by the environment variable that holds them (``secret_env``,
``password_env``), so the file and everything that shows the configuration can be read
without revealing one.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from orchestrion.definition.durations import parse_duration
from orchestrion.errors import ConfigurationError

__all__ = [
    "DeliveryPolicy",
    "KafkaSinkConfig",
    "NatsSinkConfig",
    "RedisStreamSinkConfig",
    "SinkConfig",
    "SinksConfig",
    "WebhookSinkConfig",
    "load_sinks",
    "parse_sinks",
    "secret_from_env",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_ENV = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_MAX_DOCUMENT = 256 * 1024
_SUBJECT = r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"  # NATS tokens, no wildcards


def _seconds(value: Any) -> float:
    return parse_duration(value)


Seconds = Annotated[float, Field(ge=0)]


class _Sink(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="the sink's name: letters, digits, . _ - (at most 100)")
    events: tuple[str, ...] = Field(
        default=("*",),
        description="glob patterns of the event types sent here, such as execution.* ",
    )

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a sink name is 1 to 100 letters, digits and . _ - (first a letter)")
        return value

    @field_validator("events")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for pattern in value:
            if not pattern or len(pattern) > 128:
                raise ValueError("an event pattern is 1 to 128 characters, such as 'node.*'")
        return value

    def wants(self, event_type: str) -> bool:
        """Whether events of ``event_type`` go to this sink (its ``events`` patterns)."""
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.events)


def _env_name(value: str | None) -> str | None:
    if value is not None and not _ENV.match(value):
        raise ValueError("an environment variable name: letters, digits and _")
    return value


class WebhookSinkConfig(_Sink):
    """POST each event as JSON to ``url``, signed with the secret in ``secret_env``."""

    type: Literal["webhook"]
    url: str = Field(description="http(s) URL; the http handler's SSRF guard applies")
    secret_env: str | None = Field(
        default=None, description="environment variable holding the HMAC signing secret"
    )
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers")
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per request")
    concurrency: int = Field(default=8, ge=1, le=256, description="requests at once")

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://[^/\s]+", value):
            raise ValueError("a webhook URL starts with http:// or https:// and names a host")
        return value

    @field_validator("secret_env")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        return _env_name(value)

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return _seconds(value)


class RedisStreamSinkConfig(_Sink):
    """XADD each event to a Redis Stream, trimmed to about ``maxlen`` entries."""

    type: Literal["redis_stream"]
    url: str | None = Field(
        default=None, description="redis:// URL; default: ORCHESTRION_REDIS_URL"
    )
    url_env: str | None = Field(
        default=None, description="environment variable holding the URL (when it has a password)"
    )
    stream: str = Field(default="orchestrion:events", min_length=1, max_length=200)
    maxlen: int = Field(default=100_000, ge=1, description="approximate length kept")

    @field_validator("url_env")
    @classmethod
    def _url_env(cls, value: str | None) -> str | None:
        return _env_name(value)


class NatsSinkConfig(_Sink):
    """Publish each event on NATS subject ``<subject>.<event type>``."""

    type: Literal["nats"]
    servers: tuple[str, ...] = Field(default=("nats://127.0.0.1:4222",), min_length=1)
    subject: str = Field(
        default="orchestrion.events", pattern=r"^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$"
    )
    token_env: str | None = Field(default=None, description="environment variable: auth token")
    user: str | None = Field(default=None, max_length=200)
    password_env: str | None = Field(default=None, description="environment variable: password")
    tls: bool = Field(default=False, description="TLS with the system's trust store")
    timeout: float = Field(default=5.0, gt=0, le=300, description="seconds to connect or flush")

    @field_validator("token_env", "password_env")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _credentials(self) -> NatsSinkConfig:
        if (self.user is None) != (self.password_env is None):
            raise ValueError("user and password_env go together")
        if self.user is not None and self.token_env is not None:
            raise ValueError("give a token or a user and password, not both")
        return self

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return _seconds(value)


class KafkaSinkConfig(_Sink):
    """Produce each event to Kafka ``topic``, keyed by execution id (its order kept)."""

    type: Literal["kafka"]
    bootstrap_servers: tuple[str, ...] = Field(min_length=1)
    topic: str = Field(default="orchestrion-events", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    username: str | None = None
    password_env: str | None = Field(default=None, description="environment variable: password")
    timeout: float = Field(default=10.0, gt=0, le=300, description="seconds per send")

    @field_validator("password_env")
    @classmethod
    def _password(cls, value: str | None) -> str | None:
        return _env_name(value)

    @model_validator(mode="after")
    def _sasl(self) -> KafkaSinkConfig:
        sasl = self.security_protocol.startswith("SASL_")
        if sasl and self.sasl_mechanism is None:
            raise ValueError(f"security_protocol {self.security_protocol} needs sasl_mechanism")
        if self.sasl_mechanism is not None:
            if not sasl:
                raise ValueError(
                    "sasl_mechanism needs security_protocol SASL_PLAINTEXT or SASL_SSL"
                )
            if not self.username or not self.password_env:
                raise ValueError("sasl_mechanism needs username and password_env")
        return self

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout(cls, value: Any) -> float:
        return _seconds(value)


SinkConfig = Annotated[
    WebhookSinkConfig | RedisStreamSinkConfig | NatsSinkConfig | KafkaSinkConfig,
    Field(discriminator="type"),
]


class DeliveryPolicy(BaseModel):
    """How events a sink did not take are tried again, and when they become dead letters."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=8, ge=1, le=100, description="attempts before a dead letter")
    initial_backoff: float = Field(default=1.0, gt=0, le=3600)
    max_backoff: float = Field(default=300.0, gt=0, le=86400)
    page: int = Field(default=256, ge=1, le=10_000, description="outbox entries per pass")
    interval: float = Field(default=0.5, gt=0, le=60, description="seconds between passes")
    page_budget: float = Field(
        default=5.0,
        gt=0,
        le=600,
        description="seconds a sink that sends event by event (a webhook) may spend on one"
        " page before the rest is owed, so a slow sink does not hold the others",
    )
    lease: float = Field(
        default=10.0,
        ge=1,
        le=600,
        description="publisher lease: another process publishes this long after one dies",
    )

    @field_validator(
        "initial_backoff", "max_backoff", "interval", "lease", "page_budget", mode="before"
    )
    @classmethod
    def _durations(cls, value: Any) -> float:
        return _seconds(value)

    def backoff(self, attempts: int) -> float:
        """Seconds before attempt ``attempts + 1`` (exponential, capped; no jitter needed:
        one publisher retries, not a herd)."""
        grown = self.initial_backoff * 2.0 ** min(max(0, attempts - 1), 60)
        return float(min(self.max_backoff, grown))


class SinksConfig(BaseModel):
    """Every configured sink, and the delivery policy they share."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sinks: tuple[SinkConfig, ...] = ()
    delivery: DeliveryPolicy = DeliveryPolicy()

    @field_validator("sinks")
    @classmethod
    def _unique(cls, value: tuple[Any, ...]) -> tuple[Any, ...]:
        seen: set[str] = set()
        for sink in value:
            if sink.name in seen:
                raise ValueError(f"two sinks are named '{sink.name}'")
            seen.add(sink.name)
        return value

    def named(self, name: str) -> Any:
        """The sink called ``name``, or None."""
        return next((sink for sink in self.sinks if sink.name == name), None)


def parse_sinks(text: str, where: str = "the sinks configuration") -> SinksConfig:
    """Read a YAML or JSON document; ``ConfigurationError`` names the field that is wrong."""
    if len(text.encode()) > _MAX_DOCUMENT:
        raise ConfigurationError(f"{where} is larger than {_MAX_DOCUMENT} bytes")
    import yaml  # here: only a process with sinks configured reads YAML for them

    try:
        raw = json.loads(text) if text.lstrip().startswith("{") else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"{where} does not parse: {exc}") from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where} must be a mapping with a 'sinks' list")
    try:
        return SinksConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc'])}: {error['msg']}" for error in exc.errors()
        )
        raise ConfigurationError(f"{where}: {problems}") from None


def load_sinks(path: Path | None, inline: str | None) -> SinksConfig:
    """The configuration of ``path`` (a file) or ``inline`` (the text itself); empty without."""
    if path is not None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigurationError(f"cannot read sinks file {path}: {exc.strerror}") from exc
        return parse_sinks(text, f"sinks file {path}")
    if inline:
        return parse_sinks(inline, "ORCHESTRION_SINKS")
    return SinksConfig()


def secret_from_env(name: str | None, what: str) -> str | None:
    """The value of environment variable ``name``; ``ConfigurationError`` when it is unset."""
    if name is None:
        return None
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(f"{what}: environment variable {name} is not set")
    return value
