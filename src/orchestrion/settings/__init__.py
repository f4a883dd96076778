"""Configuration: one pydantic-settings class, ``ORCHESTRION_`` environment variables and ``.env``.

This module assembles the class; ``sources`` reads the reference descriptions' variable names,
``parsing`` the text forms of multi-valued settings, ``teams`` the teams, ``secret_files`` the
secrets, ``process`` whether the process is Orchestrion's own.

Nothing is required for embedded use. Values are validated when read, and a bad one stops the
process with a message naming the variable (``load_settings`` turns pydantic's error into a
``ConfigurationError``).

Four settings change the whole process, not just Orchestrion: ``gc_freeze`` and
``gc_young_threshold`` (the garbage collector), ``mask_all_logs`` and ``capture_node_logs``
(log record factories). A library must not do that to the program that embeds it, so they
are off by default; ``claim_process`` turns them on by default in a process Orchestrion owns
(the ``orchestrion`` command, hence ``run``, ``serve`` and the scale-out processes). An
embedder turns them on with ``Settings(gc_freeze=True)`` or the environment, which wins over
both defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from orchestrion import errors
from orchestrion.settings import parsing, process
from orchestrion.settings.process import claim_process, owns_process
from orchestrion.settings.secret_files import load_secrets, webhook_secret
from orchestrion.settings.sources import ComposedUrls as _ComposedUrls
from orchestrion.settings.sources import env as _env
from orchestrion.settings.teams import Team
from orchestrion.settings.teams import parse_teams as _parse_teams
from orchestrion.settings.teams import read_teams_file as _read_teams_file

__all__ = [
    "ApiRole",
    "Settings",
    "Team",
    "claim_process",
    "load_secrets",
    "load_settings",
    "owns_process",
    "webhook_secret",
]


ApiRole = Literal["admin", "operator", "viewer"]


class Settings(BaseSettings):
    """Every knob of an Orchestrion process."""

    model_config = SettingsConfigDict(
        env_prefix="ORCHESTRION_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_by_name=True,  # Settings(database_url=...) as well as the variables
    )

    database_url: str = Field(
        default="sqlite:///orchestrion.db",
        validation_alias=_env("database_url", "DATABASE_URL"),
        description="sqlite:///path (embedded, default ./orchestrion.db), memory://, "
        "or postgresql://... (scale-out)",
    )
    sqlite_synchronous: Literal["normal", "full"] = Field(
        default="normal",
        description="when a SQLite store's commit reaches the disk. normal (the default):"
        " a commit survives the process being killed, but the last commits before a power"
        " loss or an operating-system crash may be lost (never half of one); full: every"
        " commit is flushed to the disk (fsync) before it returns, so it survives a power"
        " loss too, at the cost of one flush per commit",
    )
    concurrency: int = Field(
        default=64,
        ge=1,
        le=100_000,
        validation_alias=_env("concurrency", "WORKER_CONCURRENCY"),
        description="node attempts at once",
    )
    secrets_file: Path | None = Field(
        default=None, description="KEY=VALUE file of secrets for {{ secrets.KEY }}"
    )
    shutdown_grace: float = Field(default=10.0, ge=0, description="seconds to drain on stop")
    gc_freeze: bool = Field(
        default=False,
        description="move the objects alive at the first engine start out of the garbage"
        " collector's reach, process-wide (engine/gc_tuning.py); on in the CLI and the server",
    )
    gc_young_threshold: int = Field(
        default=0,
        ge=0,
        description="while an engine or a worker runs, collect the garbage collector's"
        " youngest generation after this many new objects instead of CPython's 700,"
        " process-wide"
        " (engine/gc_tuning.py); 0 leaves the collector as it is; 20000 in the CLI and the"
        " server",
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
    # engine/nesting.py: how deep sub-workflows nest, how wide one level of a root's tree is;
    # the values of the process that makes a root execution are recorded on it, for its tree
    max_child_depth: int = Field(default=16, ge=1, le=32)  # le: nesting.DEPTH_CEILING
    max_child_width: int = Field(default=256, ge=1, le=65536)  # le: nesting.WIDTH_CEILING
    scheduler: bool = Field(
        default=True,
        description="fire scheduled triggers from `orchestrion serve` (embedded mode) and the"
        " orchestrators; one process at a time holds the scheduler lease",
    )
    scheduler_interval: float = Field(
        default=1.0, ge=0.05, le=60.0, description="seconds between two scheduler passes"
    )
    scheduler_lease_seconds: float = Field(
        default=10.0,
        ge=1.0,
        le=600.0,
        description="scheduler lease: another process takes over this long after one dies",
    )
    # events in and out (docs/EVENTS.md)
    sinks_file: Path | None = Field(
        default=None,
        description="YAML or JSON file of event sinks: webhook, redis_stream, nats, kafka",
    )
    sinks: str | None = Field(
        default=None, description="the event sinks document itself (YAML or JSON), not a file"
    )
    webhook_secrets_file: Path | None = Field(
        default=None,
        description="KEY=VALUE file of inbound webhook secrets, besides"
        " ORCHESTRION_WEBHOOK_SECRET_<NAME> variables",
    )
    webhook_max_body_bytes: int = Field(
        default=1024 * 1024,
        ge=1024,
        le=64 * 1024 * 1024,
        description="largest body an inbound webhook accepts",
    )
    webhook_tolerance_seconds: float = Field(
        default=300.0,
        ge=1.0,
        le=86400.0,
        description="how far a signed webhook timestamp may be from now (replays, clock skew)",
    )
    # scale-out (PostgreSQL + Redis Streams)
    redis_url: str | None = Field(
        default=None,
        validation_alias=_env("redis_url", "REDIS_URL"),
        description="redis://host:port/db: dispatch through Redis Streams (scale-out mode)",
    )
    redis_prefix: str = Field(
        default="orchestrion",
        min_length=1,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        description="prefix of every Redis key and stream",
    )
    heartbeat_seconds: float = Field(
        default=2.0,
        gt=0,
        le=300,
        validation_alias=_env("heartbeat_seconds", "WORKER_HEARTBEAT_INTERVAL"),
        description="workers, orchestrators and reapers heartbeat this often",
    )
    reaper_interval: float = Field(default=1.0, gt=0, le=3600)
    reaper_idle_seconds: float = Field(
        default=300.0,
        gt=0,
        validation_alias=_env("reaper_idle_seconds", "REAPER_MIN_IDLE_SECONDS"),
        description="a task entry no live worker renewed for this long is given to another"
        " worker (workers renew theirs well within it: set it alike on workers and reapers)",
    )
    # Factories are lambdas, not list or dict: pydantic reads a factory's signature as the
    # model is built, and a builtin's means parsing its text signature (a few ms per start).
    reaper_handler_idle: Annotated[dict[str, float], NoDecode] = Field(
        default_factory=lambda: {},
        description='per-handler idle timeouts (as reaper_idle_seconds): "http:60,llm:600"',
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
        validation_alias=_env("governance_file", "GOVERNANCE_CONFIG_PATH"),
        description="the governance policy (governance.yaml); none: the shipped default",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=_env("log_level", "LOG_LEVEL", "APP_LOG_LEVEL")
    )
    # execution/log_capture.py: node attempts' own log lines, kept with the run
    capture_node_logs: bool = Field(
        default=False,
        description="keep the log lines each node attempt writes with the run (readable"
        " through orchestrion logs and the API), through a process-wide log record factory;"
        " on in the CLI, the server and the scale-out processes",
    )
    node_log_max_lines: int = Field(
        default=1000,
        ge=0,
        le=1_000_000,
        description="log lines kept per node attempt (more are counted, and a last line says"
        " how many were left out); 0: node log lines are not captured",
    )
    node_log_max_bytes: int = Field(
        default=256 * 1024,
        ge=0,
        le=64 * 1024 * 1024,
        description="bytes of log message kept per node attempt (0: not captured)",
    )
    # execution/storable.py: what an attempt's error keeps
    node_error_max_chars: int = Field(
        default=16 * 1024,
        ge=256,
        le=16 * 1024 * 1024,
        description="characters kept of a node error's message, and of its traceback (the"
        " start; a last part says how many characters were cut)",
    )
    # handlers/function_threads.py: the threads python nodes' sync functions run in
    python_threads: int = Field(
        default=16,
        ge=1,
        le=1024,
        description="threads for the sync functions of python nodes, apart from the"
        " engine's own; a function still running after its attempt was cancelled or timed"
        " out keeps its thread, is counted, and makes /health degraded",
    )
    # One default for every process that logs (serve, orchestrator, worker, reaper, up).
    log_format: Literal["json", "console"] = Field(
        default="json", validation_alias=_env("log_format", "LOG_FORMAT")
    )

    # the service (`orchestrion serve`)
    host: str = Field(
        default="127.0.0.1",
        min_length=1,
        validation_alias=_env("host", "SERVER_HOST"),
        description="address to listen on",
    )
    port: int = Field(
        default=8000,
        ge=0,
        le=65535,
        validation_alias=_env("port", "SERVER_PORT"),
        description="port to listen on (0: any)",
    )
    api_workers: int = Field(
        default=1,
        ge=1,
        le=64,
        description="server processes sharing the port, each with its own engine on the "
        "same database (orchestrion serve --workers); not with memory://",
    )
    api_worker_timeout: float = Field(
        default=30.0,
        ge=0,
        description="seconds a server process of serve --workers may go without a heartbeat"
        " from its event loop (stopped, or blocked by synchronous code) before it is killed"
        " and replaced; 0 never, else at least 2",
    )
    retention_sweep_seconds: float = Field(
        default=3600.0,
        ge=1,
        description="how often orchestrion serve deletes what the policy's retention.days"
        " let go (one process of the service sweeps at a time); the first sweep comes a minute"
        " after start, or sooner when this is shorter",
    )
    api_keys: Annotated[dict[str, ApiRole], NoDecode] = Field(
        default_factory=lambda: {},
        repr=False,  # keys are credentials: never in a repr or a log line
        description='API keys and their roles: "key1:admin,key2:operator,key3:viewer"; '
        "none: the API is open. A key may be named for approvals and the audit trail: "
        '"key1:operator:cfo" (a name is letters, digits, ".", "_" or "-", not a role)',
    )
    dashboard: bool = Field(
        default=True, description="serve the web dashboard at /ui/ (orchestrion serve)"
    )
    session_seconds: float = Field(
        default=8 * 3600,
        ge=60,
        le=30 * 86400,
        description="how long a dashboard sign-in (a session cookie made from an API key) lasts",
    )
    session_cookie_secure: bool | None = Field(
        default=None,
        description="mark the session cookie Secure (sent over https only); unset: when the "
        "request came over https (set it to true behind a proxy that terminates TLS)",
    )
    # Filled from api_keys' ``key:role:name`` entries (see ``_split_key_names``).
    api_key_names: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=lambda: {}, repr=False, exclude=True
    )
    approver_groups: Annotated[dict[str, tuple[str, ...]], NoDecode] = Field(
        default_factory=lambda: {},
        description="groups an approval's `approvers` may name: \"finance=cfo+controller,"
        'risk=cro" (members are API key names)',
    )
    teams: Annotated[dict[str, Team], NoDecode] = Field(
        default_factory=lambda: {},
        description="teams that routing rules and error handling name (targets, approvers,"
        ' recipients), as JSON: \'{"cfo": {"members": ["alice"], "notify":'
        " [\"mailto:cfo@example.com\"]}}' (members are API key names); added to teams_file's",
    )
    teams_file: Path | None = Field(
        default=None,
        description="a YAML or JSON file of teams (`teams: {name: {members, notify}}`)",
    )
    required_headers: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description='headers every mutating call must carry: "X-Request-Source,X-Client-ID"',
    )
    # One client may start 2,000 executions at once (a batch, a backfill) and keep polling
    # them; a runaway one is still cut to about what one embedded server answers a second.
    rate_limit_per_second: float = Field(
        default=1000.0,
        ge=0,
        description="requests per second per API key (per address when the API is open;"
        " 0: no limit)",
    )
    rate_limit_burst: int = Field(
        default=2500, ge=0, description="requests an API key may make at once (0: no limit)"
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
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="host names the API answers to besides localhost and the bound address:"
        ' "orchestrion.example.com,*.internal"; "*": any (`orchestrion serve` refuses other'
        " Host headers, which DNS rebinding would send)",
    )
    # api/stream_slots.py: each open stream wakes and sends at every commit
    sse_max_streams: int = Field(
        default=256, ge=0, description="event streams open at once in this process (0: no limit)"
    )
    sse_max_streams_per_caller: int = Field(
        default=32,
        ge=0,
        description="event streams open at once per API key (per address without one; 0: no limit)",
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
        """The usual sources, URLs composed of the references' host and port variables,
        then the defaults of a process Orchestrion owns."""
        owned = InitSettingsSource(settings_cls, dict(process.OWNED_PROCESS_DEFAULTS))
        composed = _ComposedUrls(settings_cls, env_settings, dotenv_settings)
        sources = (init_settings, env_settings, dotenv_settings, file_secret_settings)
        return *sources, composed, owned

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_level(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _split_key_names(cls, data: Any) -> Any:
        return parsing.split_key_names(data)

    @field_validator("teams", mode="before")
    @classmethod
    def _parse_teams(cls, value: Any) -> Any:
        return _parse_teams(value)

    @model_validator(mode="after")
    def _merge_teams_file(self) -> Settings:
        if self.teams_file is None:
            return self
        loaded = self._parse_teams(_read_teams_file(self.teams_file))
        try:
            found = {name: Team.model_validate(team) for name, team in loaded.items()}
        except ValidationError as exc:
            raise ValueError(f"teams file {self.teams_file}: {exc}") from exc
        self.teams = {**found, **self.teams}
        return self

    def decider_groups(self) -> dict[str, tuple[str, ...]]:
        """Names an approval's ``approvers`` may give and who they stand for: the approver
        groups, and every team's members."""
        groups = dict(self.approver_groups)
        for name, team in self.teams.items():
            groups[name] = tuple(dict.fromkeys((*groups.get(name, ()), *team.members)))
        return groups

    def team_members(self) -> dict[str, tuple[str, ...]]:
        """Each team's members: who may decide on a routing rule naming the team."""
        return {name: tuple(team.members) for name, team in self.teams.items()}

    # The text forms of the settings that hold several values (parsing.py).
    _parse_groups = field_validator("approver_groups", mode="before")(parsing.parse_groups)
    _parse_api_keys = field_validator("api_keys", mode="before")(parsing.parse_api_keys)
    _parse_proxies = field_validator("trusted_proxies", mode="before")(parsing.parse_proxies)
    _parse_hosts = field_validator("allowed_hosts", mode="before")(parsing.parse_hosts)
    _parse_idle = field_validator("reaper_handler_idle", mode="before")(parsing.parse_handler_idle)
    _parse_headers = field_validator("required_headers", mode="before")(parsing.parse_headers)


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``; raise ``ConfigurationError`` if bad."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"{_variable('_'.join(str(p) for p in err['loc']))}: {err['msg']}"
            for err in exc.errors()
        )
        raise errors.ConfigurationError(f"invalid configuration: {problems}") from exc


def _variable(loc: str) -> str:
    """The variable a validation error is about: the one of a field's names that is set
    in the environment (a reference alias, say), else ours."""
    name = loc.upper().removeprefix("ORCHESTRION_").lower()
    field = Settings.model_fields.get(name)
    alias = field.validation_alias if field is not None else None
    if isinstance(alias, AliasChoices):
        environ = {key.upper() for key in os.environ}
        for choice in alias.choices:
            if isinstance(choice, str) and choice.upper() in environ:
                return choice
    return f"ORCHESTRION_{name.upper()}"
