"""The definition limits in the CLI: ``orchestrion validate`` and ``orchestrion run`` refuse a
definition past them with exit 2 and a message naming the limit, under the policy file that
``ORCHESTRION_GOVERNANCE_FILE`` names (the shipped one, or one's own). Without a named policy,
one's own files are bounded by their nesting depth only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from test_cli import orchestrion

from orchestrion.governance.policy import DEFAULT_POLICY_FILE

pytestmark = pytest.mark.slow


def _one_line(text: str) -> str:
    return re.sub(r"\s+", " ", text)  # the console wraps long messages


def _write(folder: Path, name: str, nodes: list[dict[str, Any]]) -> Path:
    file = folder / name
    file.write_text(json.dumps({"name": "w", "dag": {"nodes": nodes}}, indent=1))
    return file


@pytest.mark.parametrize("command", ["validate", "run"])
def test_too_many_dependencies_exit_2_naming_the_limit(tmp_path: Path, command: str) -> None:
    nodes = [{"id": "a", "handler": "noop"}, {"id": "b", "handler": "noop"}]
    nodes[1]["dependencies"] = ["a"] * 1_500
    file = _write(tmp_path, "deps.json", nodes)
    extra = ["--db", str(tmp_path / "r.db")] if command == "run" else []
    env = {"ORCHESTRION_GOVERNANCE_FILE": str(DEFAULT_POLICY_FILE)}
    result = orchestrion(command, str(file), *extra, env=env)
    message = _one_line(result.stderr)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert "node 'b'" in message and "1500 dependencies" in message
    assert "(definitions.max_dependencies_per_node)" in message
    assert "Traceback" not in result.stderr


def test_ones_own_file_is_not_bounded_by_the_default_sizes(tmp_path: Path) -> None:
    """The default sizes protect the service; locally, a 12,000-node file is one's own."""
    nodes = [{"id": f"n{i}", "handler": "noop"} for i in range(12_000)]
    file = _write(tmp_path, "wide.json", nodes)
    result = orchestrion("validate", str(file))
    assert result.returncode == 0, result.stderr


def test_the_policy_file_sets_the_cli_limits(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\ndefinitions:\n  max_nodes: 3\n  max_bytes: 100000\n")
    env = {"ORCHESTRION_GOVERNANCE_FILE": str(policy)}
    file = _write(tmp_path, "four.json", [{"id": f"n{i}", "handler": "noop"} for i in range(4)])
    result = orchestrion("validate", str(file), env=env)
    assert result.returncode == 2, result.stderr
    assert "4 nodes, more than the limit of 3 (definitions.max_nodes)" in _one_line(result.stderr)
    assert orchestrion("validate", str(file)).returncode == 0
    big = tmp_path / "big.yaml"
    big.write_text("name: w\n# " + "x" * 200_000 + "\ndag: {nodes: [{id: a, handler: noop}]}\n")
    result = orchestrion("validate", str(big), env=env)
    assert result.returncode == 2, result.stderr
    assert "(definitions.max_bytes)" in _one_line(result.stderr)


def test_problems_past_max_problems_are_counted(tmp_path: Path) -> None:
    nodes = [{"id": f"n{i}", "handler": "noop", "dependencies": ["ghost"]} for i in range(150)]
    file = _write(tmp_path, "ghosts.json", nodes)
    result = orchestrion("validate", str(file), "--json")
    assert result.returncode == 2, result.stderr
    issues = json.loads(result.stdout)["issues"]
    assert len(issues) == 101
    assert issues[-1]["message"].startswith("50 more problems not listed")
