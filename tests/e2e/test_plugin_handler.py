"""A third-party handler package, installed for real, is found through its entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

PLUGIN = Path(__file__).resolve().parents[2] / "examples" / "plugin-handler"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(PLUGIN),
        ],
        check=True,
        capture_output=True,
        timeout=180,
    )
    return target


def _orchestrion(plugin_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_path), env.get("PYTHONPATH", "")])
    return subprocess.run(
        [sys.executable, "-m", "orchestrion.cli.app", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_installed_plugin_handler_runs(plugin_path: Path, tmp_path: Path) -> None:
    result = _orchestrion(
        plugin_path, "run", str(PLUGIN / "flow.yaml"), "--db", str(tmp_path / "p.db"), "--json"
    )
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["result"]["hello"]["greeting"] == "Bonjour, world!"


def test_plugin_config_schema_is_enforced_at_validation(plugin_path: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((PLUGIN / "flow.yaml").read_text().replace("language: fr", "language: xx"))
    result = _orchestrion(plugin_path, "validate", str(bad))
    assert result.returncode == 2
    assert "hello" in result.stderr and "language" in result.stderr
