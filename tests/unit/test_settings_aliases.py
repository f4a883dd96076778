"""The reference descriptions' variable names are read as aliases of ours (ours win when
both are set), from the environment and from ``.env``; URLs are composed of their host and
port variables; a bad value names the variable that holds it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.settings import Settings, load_settings

ALIASES = [
    ("database_url", "DATABASE_URL", "sqlite:///swarmlite.db", "sqlite:///swarmlite.db"),
    ("redis_url", "REDIS_URL", "redis://cache:6379/1", "redis://cache:6379/1"),
    ("concurrency", "WORKER_CONCURRENCY", "10", 10),
    ("heartbeat_seconds", "WORKER_HEARTBEAT_INTERVAL", "5.0", 5.0),
    ("reaper_idle_seconds", "REAPER_MIN_IDLE_SECONDS", "90", 90.0),
    ("governance_file", "GOVERNANCE_CONFIG_PATH", "config/governance.yaml",
     Path("config/governance.yaml")),
    ("log_level", "LOG_LEVEL", "INFO", "INFO"),
    ("log_level", "APP_LOG_LEVEL", "debug", "DEBUG"),
    ("log_format", "LOG_FORMAT", "console", "console"),
    ("host", "SERVER_HOST", "0.0.0.0", "0.0.0.0"),
    ("port", "SERVER_PORT", "8001", 8001),
]  # fmt: skip
REFERENCE_NAMES = sorted(
    {name for _, name, _, _ in ALIASES}
    | {"REDIS_HOST", "REDIS_PORT", "APP_REDIS_HOST", "APP_REDIS_PORT", "APP_REDIS_DB"}
    | {"APP_REDIS_PASSWORD", "POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_USER"}
    | {"POSTGRES_PASSWORD", "POSTGRES_DATABASE"}
)


@pytest.fixture(autouse=True)
def clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No variable of ours or of the references, and no .env, but the test's own."""
    monkeypatch.chdir(tmp_path)
    for name in REFERENCE_NAMES:
        monkeypatch.delenv(name, raising=False)
    for field in Settings.model_fields:
        monkeypatch.delenv(f"ORCHESTRION_{field.upper()}", raising=False)


@pytest.mark.parametrize(("field", "variable", "text", "value"), ALIASES)
def test_a_reference_name_sets_our_setting(
    monkeypatch: pytest.MonkeyPatch, field: str, variable: str, text: str, value: object
) -> None:
    monkeypatch.setenv(variable, text)
    assert getattr(load_settings(), field) == value


@pytest.mark.parametrize(("field", "variable", "text", "value"), ALIASES[:3])
def test_ours_wins_when_both_are_set(
    monkeypatch: pytest.MonkeyPatch, field: str, variable: str, text: str, value: object
) -> None:
    ours = {"database_url": "memory://", "redis_url": "redis://ours:6379/0", "concurrency": "7"}
    monkeypatch.setenv(variable, text)
    monkeypatch.setenv(f"ORCHESTRION_{field.upper()}", ours[field])
    assert str(getattr(load_settings(), field)) == ours[field]


def test_aliases_are_read_from_dotenv_and_keyword_arguments_still_work(
    tmp_path: Path,
) -> None:
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///from-dotenv.db\nWORKER_CONCURRENCY=3\n")
    settings = load_settings()
    assert (settings.database_url, settings.concurrency) == ("sqlite:///from-dotenv.db", 3)
    assert load_settings(database_url="memory://", concurrency=2).concurrency == 2
    assert Settings(port=5).port == 5


def test_a_bad_alias_value_names_the_variable_that_holds_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WORKER_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError, match="WORKER_CONCURRENCY: Input should be"):
        load_settings()
    monkeypatch.setenv("ORCHESTRION_CONCURRENCY", "many")
    with pytest.raises(ConfigurationError, match="ORCHESTRION_CONCURRENCY: Input should be"):
        load_settings()
    monkeypatch.setenv("LOG_FORMAT", "text")
    with pytest.raises(ConfigurationError, match="LOG_FORMAT: Input should be 'json'"):
        load_settings(concurrency=1)


def test_redis_url_from_host_and_port_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_PORT", "6380")  # alone: not read
    assert load_settings().redis_url is None
    monkeypatch.setenv("REDIS_HOST", "redis")
    assert load_settings().redis_url == "redis://redis:6380/0"
    monkeypatch.delenv("REDIS_HOST")
    monkeypatch.setenv("APP_REDIS_HOST", "cache")
    monkeypatch.setenv("APP_REDIS_DB", "2")
    monkeypatch.setenv("APP_REDIS_PASSWORD", "p@ss/word")
    assert load_settings().redis_url == "redis://:p%40ss%2Fword@cache:6379/2"
    monkeypatch.setenv("REDIS_URL", "redis://whole:6379/0")  # a whole URL wins
    assert load_settings().redis_url == "redis://whole:6379/0"


def test_a_bad_port_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REDIS_HOST", "redis")
    monkeypatch.setenv("REDIS_PORT", "tcp://10.0.0.1:6379")
    with pytest.raises(
        ConfigurationError, match=re.escape("REDIS_PORT: not a port: 'tcp://10.0.0.1:6379'")
    ):
        load_settings()


@pytest.mark.parametrize(
    ("variable", "text", "what"),
    [
        ("APP_REDIS_DB", "two", "not a database"),
        ("APP_REDIS_PORT", "70000", "not a port"),
        ("APP_REDIS_HOST", "evil@host/0?x=", "not a host name"),
    ],
)
def test_bad_redis_parts_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, text: str, what: str
) -> None:
    monkeypatch.setenv("APP_REDIS_HOST", "cache")
    monkeypatch.setenv(variable, text)
    with pytest.raises(ConfigurationError, match=re.escape(f"{variable}: {what}: {text!r}")):
        load_settings()


def test_database_url_from_postgres_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTGRES_HOST", "db")
    assert load_settings().database_url == "postgresql://postgres@db:5432/workflow_engine"
    monkeypatch.setenv("POSTGRES_PORT", "5433")
    monkeypatch.setenv("POSTGRES_USER", "app")
    monkeypatch.setenv("POSTGRES_PASSWORD", "s3cret:x")
    monkeypatch.setenv("POSTGRES_DATABASE", "flows")
    assert load_settings().database_url == "postgresql://app:s3cret%3Ax@db:5433/flows"
    monkeypatch.setenv("DATABASE_URL", "sqlite:///whole.db")
    assert load_settings().database_url == "sqlite:///whole.db"
    monkeypatch.setenv("ORCHESTRION_DATABASE_URL", "memory://")
    assert load_settings().database_url == "memory://"
