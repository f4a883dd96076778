"""The Docker files describe what the CLI can run: every command in docker-compose.yml and the
image's CMD parse as a real ``orchestrion`` command line, and the topology has its parts.

Docker itself is not needed: the compose file is read with PyYAML, the Dockerfile as text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.exceptions import TyperException

from orchestrion.cli.app import app

ROOT = Path(__file__).resolve().parents[2]
OURS = ("migrate", "api", "orchestrator", "worker", "reaper")


def parses(argv: list[str]) -> str:
    """The subcommand of an ``orchestrion ...`` command line, after click parsed its options."""
    assert argv[0] == "orchestrion", argv
    commands = typer.main.get_command(app).commands  # type: ignore[attr-defined]
    name, *args = argv[1:]
    command = commands.get(name)
    assert command is not None, f"no such command: orchestrion {name}"
    command.make_context(name, list(args))  # raises a usage error on an unknown or bad option
    return name


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def dockerfile() -> str:
    text = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    return re.sub(r"\\\n\s*", " ", text)  # join continued lines


def test_parses_rejects_what_the_cli_would() -> None:
    assert parses(["orchestrion", "worker", "--concurrency", "4"]) == "worker"
    with pytest.raises(AssertionError):
        parses(["orchestrion", "wroker"])
    with pytest.raises(TyperException, match="No such option"):
        parses(["orchestrion", "worker", "--no-such-option"])
    with pytest.raises(typer.BadParameter):
        parses(["orchestrion", "worker", "--concurrency", "0"])


def test_the_topology_has_every_part(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {*OURS, "postgres", "redis"}
    assert services["orchestrator"]["deploy"]["replicas"] == 2
    assert services["worker"]["deploy"]["replicas"] == 3
    assert services["api"]["ports"] == ["8000:8000"]
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"
    for name in ("postgres", "redis"):
        assert services[name]["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL")


@pytest.mark.parametrize("service", OURS)
def test_every_command_is_a_real_cli_command(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    expected = {"api": "serve"}.get(service, service)
    assert parses(spec["command"]) == expected
    assert spec["build"] == "."
    assert spec["image"] == compose["services"]["api"]["image"]


@pytest.mark.parametrize("service", OURS)
def test_configuration_and_start_order(compose: dict[str, Any], service: str) -> None:
    spec = compose["services"][service]
    env = spec["environment"]
    assert env["ORCHESTRION_DATABASE_URL"].startswith("postgresql://")
    assert env["ORCHESTRION_DATABASE_URL"].endswith("@postgres:5432/orchestrion")
    assert env["ORCHESTRION_REDIS_URL"] == "redis://redis:6379/0"
    assert "ORCHESTRION_REDIS_PREFIX" in env
    depends = spec["depends_on"]
    if service == "migrate":
        assert depends == {"postgres": {"condition": "service_healthy"}}
        assert spec["restart"] == "no"  # a one-shot
    else:
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["redis"] == {"condition": "service_healthy"}
    # The image's HEALTHCHECK probes the API; the other roles serve no HTTP.
    if service == "api":
        assert "healthcheck" not in spec
    else:
        assert spec["healthcheck"] == {"disable": True}


def test_dockerfile_builds_a_wheel_and_runs_it_unprivileged(dockerfile: str) -> None:
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", dockerfile, re.MULTILINE)
    assert [name for _, name in stages] == ["build", "runtime"]
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", dockerfile, re.MULTILINE)
    assert "pip wheel --wheel-dir /wheels" in dockerfile
    assert re.search(
        r'pip install --no-index --find-links /wheels "orchestrion\[scaleout\]"', dockerfile
    )
    users = re.findall(r"^USER\s+(\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")


def test_dockerfile_cmd_and_healthcheck(dockerfile: str) -> None:
    cmd = re.search(r"^CMD\s+(\[.*\])$", dockerfile, re.MULTILINE)
    assert cmd is not None
    argv = json.loads(cmd.group(1))
    assert argv == ["orchestrion", "serve", "--host", "0.0.0.0"]
    assert parses(argv) == "serve"
    check = re.search(r"^HEALTHCHECK .*CMD\s+(\[.*\])$", dockerfile, re.MULTILINE)
    assert check is not None
    probe = json.loads(check.group(1))
    assert probe[:2] == ["python", "-c"] and "/health" in probe[2]
    compile(probe[2], "<healthcheck>", "exec")  # the probe is valid Python


def test_dockerignore_keeps_the_build_inputs_and_drops_local_state() -> None:
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", ".env", "*.db"} <= patterns
    assert not {"src", "pyproject.toml", "README.md"} & patterns
