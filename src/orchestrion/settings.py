"""Configuration: one pydantic-settings class, ``ORCHESTRION_`` environment variables and ``.env``.

Nothing is required for embedded use. Values are validated when read, and a bad one stops the
process with a message naming the variable (``load_settings`` turns pydantic's error into a
``ConfigurationError``).

Two settings change the whole process, not just Orchestrion: ``gc_freeze`` (the garbage
collector) and ``mask_all_logs`` (a log record factory). A library must not do that to the
program that embeds it, so both are off by default; ``claim_process`` turns them on by
default in a process Orchestrion owns (the ``orchestrion`` command, hence ``run``, ``serve``
and the scale-out processes). An embedder turns them on with ``Settings(gc_freeze=True)``
or the environment, which wins over both defaults.
"""

from __future__ import annotations

import ipaddress
import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from orchestrion.errors import ConfigurationError

__all__ = [
    "ApiRole",
    "Settings",
    "claim_process",
    "load_secrets",
    "load_settings",
    "owns_process",
]

SECRET_ENV_PREFIX = "ORCHESTRION_SECRET_"

ApiRole = Literal["admin", "operator", "viewer"]
_TOKEN = re.compile(r"^[\x21-\x7e]+$")
_ROLES: tuple[str, ...] = ("admin", "operator", "viewer")
_KEY_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$")  # an RFC 9110 token

# The defaults of a process Orchestrion owns, below the environment and .env: see the module
# docstring. Empty until ``claim_process``.
_OWNED_PROCESS_DEFAULTS: dict[str, Any] = {}


def claim_process() -> None:
    """This process is Orchestrion's (the command line calls this first): from now on the
    settings that tune the whole process default to on."""
    _OWNED_PROCESS_DEFAULTS.update(gc_freeze=True, mask_all_logs=True)


def owns_process() -> bool:
    """Whether ``claim_process`` was called: Orchestrion may tune process-wide state."""
    return bool(_OWNED_PROCESS_DEFAULTS)


class Settings(BaseSettings):
    """Every knob of an Orchestrion process."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRION_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    database_url: str = Field(
        default="sqlite:///orchestrion.db",
        description="sqlite:///path (embedded, default ./orchestrion.db), memory://, "
        "or postgresql://... (scale-out)",
    )
    concurrency: int = Field(default=64, ge=1, le=100_000, description="node attempts at once")
    secrets_file: Path | None = Field(
        default=None, description="KEY=VALUE file of secrets for {{ secrets.KEY }}"
    )
    shutdown_grace: float = Field(default=10.0, ge=0, description="seconds to drain on stop")
    gc_freeze: bool = Field(
        default=False,
        description="move the objects alive at the first engine start out of the garbage"
        " collector's reach, process-wide (engine/gc_tuning.py); on in the CLI and the server",
    )
    mask_all_logs: bool = Field(
        default=False,
        description="mask personal data (the governance policy's masking) and hide secrets in"
        " every log record of the process, whoever writes it, through a process-wide log"
        " record factory; on in the CLI and the server",
    )
    inline_attempts: bool = Field(
        default=True,
        description="run the attempts of handlers with nothing to wait for (noop, input,"
        " output, condition, delay, approval) in the engine's turn, before its commit; false:"
        " every attempt goes to the dispatcher (in scale-out mode, to a worker)",
    )
    lease_seconds: float = Field(
        default=30.0, ge=0.5, description="ownership lease of a running execution"
    )
    # scale-out (PostgreSQL + Redis Streams)
    redis_url: str | None = Field(
        default=None,
        description="redis://host:port/db: dispatch through Redis Streams (scale-out mode)",
    )
    redis_prefix: str = Field(
        default="orchestrion",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="prefix of every Redis key and stream",
    )
    heartbeat_seconds: float = Field(
        default=2.0, gt=0, le=300, description="workers and orchestrators heartbeat this often"
    )
    reaper_interval: float = Field(default=1.0, gt=0, le=3600)
    reaper_idle_seconds: float = Field(
        default=300.0,
        gt=0,
        description="a task entry idle this long (or its node timeout + 30 s) is reclaimed"
        " even from a live worker",
    )
    reaper_handler_idle: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=dict, description='per-handler idle timeouts: "http:60,llm:600"'
    )
    max_deliveries: int = Field(
        default=5, ge=1, le=1000, description="deliveries of a task before it goes to the DLQ"
    )
    guard_ttl: float = Field(
        default=7 * 86400, gt=0, description="seconds a dispatched-attempt guard is kept"
    )
    circuit_failure_threshold: int = Field(
        default=5, ge=1, description="failures in a row that open a circuit"
    )
    circuit_open_seconds: float = Field(
        default=30.0, gt=0, description="how long an open circuit fails fast"
    )
    http_timeout: float = Field(default=30.0, gt=0)
    http_max_connections: int = Field(default=100, ge=1)
    governance_file: Path | None = Field(
        default=None,
        description="the governance policy (governance.yaml); none: the shipped default",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # One default for every process that logs (serve, orchestrator, worker, reaper, up).
    log_format: Literal["json", "console"] = "json"

    # the service (`orchestrion serve`)
    host: str = Field(default="127.0.0.1", min_length=1, description="address to listen on")
    port: int = Field(default=8000, ge=0, le=65535, description="port to listen on (0: any)")
    api_keys: Annotated[dict[str, ApiRole], NoDecode] = Field(
        default_factory=dict,
        repr=False,  # keys are credentials: never in a repr or a log line
        description='API keys and their roles: "key1:admin,key2:operator,key3:viewer"; '
        "none: the API is open. A key may be named for approvals and the audit trail: "
        '"key1:operator:cfo" (a name is letters, digits, ".", "_" or "-", not a role)',
    )
    # Filled from api_keys' ``key:role:name`` entries (see ``_split_key_names``).
    api_key_names: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, repr=False, exclude=True
    )
    approver_groups: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=dict,
        description="groups an approval's `approvers` may name: \"finance=cfo+controller,"
        'risk=cro" (members are API key names)',
    )
    required_headers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description='headers every mutating call must carry: "X-Request-Source,X-Client-ID"',
    )
    rate_limit_per_second: float = Field(
        default=100.0,
        ge=0,
        description="requests per second per API key (per address when the API is open;"
        " 0: no limit)",
    )
    rate_limit_burst: int = Field(
        default=500, ge=0, description="requests an API key may make at once (0: no limit)"
    )
    # api/gate.py: callers without a valid key are limited by address, far more tightly
    rate_limit_unauthenticated_per_second: float = Field(
        default=2.0,
        ge=0,
        description="requests per second per address without a valid API key (0: no limit)",
    )
    rate_limit_unauthenticated_burst: int = Field(
        default=20, ge=0, description="requests at once per address without a valid API key"
    )
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description='proxies whose X-Forwarded-For is believed: "10.0.0.0/8,192.0.2.7";'
        " none (the default): the client address is the peer's, the header is ignored",
    )
    refusal_summary_seconds: float = Field(
        default=60.0,
        ge=1,
        le=86400,
        description="requests refused before authentication are audited as one summary record"
        " per this many seconds, never one record each",
    )
    max_body_bytes: int = Field(
        default=10 * 1024 * 1024, ge=1024, description="largest request body accepted"
    )
    sse_keepalive: float = Field(
        default=15.0, gt=0, le=3600, description="seconds between keep-alive comments"
    )
    sse_poll: float = Field(
        default=5.0,
        gt=0,
        le=3600,
        description="seconds between event-journal reads when nothing woke a stream "
        "(events written by other processes)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The usual sources, then the defaults of a process Orchestrion owns."""
        owned = InitSettingsSource(settings_cls, dict(_OWNED_PROCESS_DEFAULTS))
        return init_settings, env_settings, dotenv_settings, file_secret_settings, owned

    @model_validator(mode="before")
    @classmethod
    def _split_key_names(cls, data: Any) -> Any:
        """``key:role:name`` entries of api_keys: the name goes to ``api_key_names``."""
        if not isinstance(data, dict) or not isinstance(data.get("api_keys"), str):
            return data
        entries: list[str] = []
        names: dict[str, str] = {}
        for item in data["api_keys"].split(","):
            item = item.strip()
            parts = item.split(":")
            if (
                len(parts) >= 3
                and parts[-2].strip().lower() in _ROLES
                and parts[-1].strip().lower() not in _ROLES
            ):
                name = parts[-1].strip()
                if not _KEY_NAME.fullmatch(name):
                    raise ValueError(f"api key name {name!r}: use letters, digits, '.', '_' or '-'")
                key = ":".join(parts[:-2]).strip()
                if name in names.values():
                    raise ValueError(f"api key name {name!r} is given twice")
                names[key] = name
                item = ":".join(parts[:-1])
            entries.append(item)
        return {**data, "api_keys": ",".join(entries), "api_key_names": names}

    @field_validator("approver_groups", mode="before")
    @classmethod
    def _parse_groups(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        groups: dict[str, tuple[str, ...]] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            group, sep, members = item.partition("=")
            group = group.strip()
            listed = tuple(m.strip() for m in members.split("+") if m.strip())
            if not sep or not _KEY_NAME.fullmatch(group) or not listed:
                raise ValueError('expected groups as "group=name1+name2", separated by commas')
            groups[group] = listed
        return groups

    @field_validator("api_keys", mode="before")
    @classmethod
    def _parse_api_keys(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        keys: dict[str, str] = {}
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            key, sep, role = item.rpartition(":")
            key, role = key.strip(), role.strip().lower()
            if not sep or not key:
                raise ValueError("expected key:role pairs separated by commas")
            if role not in _ROLES:
                raise ValueError(f"unknown role {role!r}: use admin, operator or viewer")
            if not _TOKEN.match(key):
                # A key travels in an HTTP header: other characters could never match.
                raise ValueError("an API key must be printable ASCII without spaces")
            if key in keys:
                raise ValueError("a key is listed twice")
            keys[key] = role
        return keys

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _parse_proxies(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            for item in value:
                try:
                    ipaddress.ip_network(str(item), strict=False)
                except ValueError:
                    raise ValueError(f"{item!r} is not an IP address or network") from None
        return value

    @field_validator("reaper_handler_idle", mode="before")
    @classmethod
    def _parse_handler_idle(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        idle: dict[str, float] = {}
        for item in value.split(","):
            if not item.strip():
                continue
            handler, sep, seconds = item.partition(":")
            try:
                idle[handler.strip()] = float(seconds)
            except ValueError:
                sep = ""
            if not sep or not handler.strip() or idle.get(handler.strip(), 0) <= 0:
                raise ValueError(f"expected handler:seconds pairs, got {item.strip()!r}")
        return idle

    @field_validator("required_headers", mode="before")
    @classmethod
    def _parse_headers(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [item.strip() for item in value.split(",") if item.strip()]
        if isinstance(value, list | tuple):
            for name in value:
                if not isinstance(name, str) or not _HEADER_NAME.match(name):
                    raise ValueError(f"{name!r} is not a valid header name")
        return value


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``; raise ``ConfigurationError`` if bad."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"ORCHESTRION_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid configuration: {problems}") from exc


@lru_cache(maxsize=8)
def _read_secrets_file(path: str) -> dict[str, str]:
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read secrets file {path}: {exc.strerror}") from exc
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"secrets file {path}, line {number}: expected KEY=VALUE")
        values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def load_secrets(settings: Settings) -> dict[str, str]:
    """Secrets for templates: ``ORCHESTRION_SECRET_<NAME>`` variables, then the secrets file.

    Only prefixed variables are exposed, so a workflow cannot read arbitrary process
    environment (a database password, say) through ``{{ secrets.X }}``.
    """
    secrets = {
        key[len(SECRET_ENV_PREFIX) :]: value
        for key, value in os.environ.items()
        if key.startswith(SECRET_ENV_PREFIX) and len(key) > len(SECRET_ENV_PREFIX)
    }
    if settings.secrets_file is not None:
        for key, value in _read_secrets_file(str(settings.secrets_file)).items():
            secrets.setdefault(key, value)
    return secrets
