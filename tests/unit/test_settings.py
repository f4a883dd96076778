"""Settings come from ORCHESTRION_ variables; bad values stop with a message naming them."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.settings import load_secrets, load_settings


def test_defaults_need_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    assert settings.database_url == "sqlite:///orchestrion.db"
    assert settings.concurrency == 64


def test_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCHESTRION_CONCURRENCY", "lots")
    with pytest.raises(ConfigurationError, match="ORCHESTRION_CONCURRENCY"):
        load_settings()


def test_secrets_from_prefixed_env_and_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secrets_file = tmp_path / "secrets.env"
    secrets_file.write_text("# comment\nAPI_TOKEN=from-file\nOTHER='quoted'\n")
    monkeypatch.setenv("ORCHESTRION_SECRET_API_TOKEN", "from-env")
    monkeypatch.setenv("DATABASE_PASSWORD", "never-exposed")
    monkeypatch.setenv("ORCHESTRION_SECRETS_FILE", str(secrets_file))
    secrets = load_secrets(load_settings())
    assert secrets["API_TOKEN"] == "from-env"
    assert secrets["OTHER"] == "quoted"
    assert "DATABASE_PASSWORD" not in secrets


def test_malformed_secrets_file_names_the_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.env"
    bad.write_text("GOOD=1\nthis line is wrong\n")
    monkeypatch.setenv("ORCHESTRION_SECRETS_FILE", str(bad))
    with pytest.raises(ConfigurationError, match="line 2"):
        load_secrets(load_settings())


def test_teams_come_from_json_and_a_file_and_bad_ones_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    teams = tmp_path / "teams.yaml"
    teams.write_text("teams:\n  cfo: {members: [alice], notify: ['mailto:cfo@example.com']}\n")
    monkeypatch.setenv("ORCHESTRION_TEAMS_FILE", str(teams))
    monkeypatch.setenv("ORCHESTRION_TEAMS", '{"ops": {"members": ["olga"]}}')
    settings = load_settings()
    assert set(settings.teams) == {"cfo", "ops"}
    assert settings.teams["cfo"].notify == ("mailto:cfo@example.com",)
    assert settings.decider_groups()["cfo"] == ("alice",)
    monkeypatch.setenv("ORCHESTRION_TEAMS", "{not json")
    with pytest.raises(ConfigurationError, match=r"ORCHESTRION_TEAMS: .*JSON object of teams"):
        load_settings()
    monkeypatch.setenv("ORCHESTRION_TEAMS", '{"ops": {"members": ["has space"]}}')
    with pytest.raises(ConfigurationError, match="ORCHESTRION_TEAMS"):
        load_settings()
    monkeypatch.delenv("ORCHESTRION_TEAMS")
    teams.write_text("teams:\n  cfo: {members: [alice], phone: 555}\n")
    with pytest.raises(ConfigurationError, match=r"teams file .*teams\.yaml"):
        load_settings()
