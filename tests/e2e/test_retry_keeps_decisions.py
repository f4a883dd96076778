"""Retry and rerun keep the decisions a run made: a branch a condition did not take, and a
node whose ``when:`` was false, stay skipped unless the deciding node runs again.

Real ``orchestrion`` processes on a real SQLite file, as a user meets it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]

FLAKY = (
    "import os\n"
    "def once(path):\n"
    "    if not os.path.exists(path):\n"
    "        open(path, 'w').close()\n"
    "        from orchestrion.errors import PermanentNodeError\n"
    "        raise PermanentNodeError('first attempt fails')\n"
    "    return 'ok'\n"
)


def orchestrion(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    full_env["COLUMNS"] = "200"
    full_env.update(env)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env)


def states(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    data = json.loads(result.stdout)
    return {node: info["state"] for node, info in data["nodes"].items()} | {
        "_status": data["status"],
        "_id": data["execution_id"],
    }


def _setup(tmp_path: Path, flow: str) -> tuple[Path, str, dict[str, str]]:
    module = tmp_path / "mods" / "flakymod.py"
    module.parent.mkdir()
    module.write_text(FLAKY)
    path = tmp_path / "flow.yaml"
    path.write_text(flow.replace("@FLAG@", str(tmp_path / "failed-once")))
    return path, str(tmp_path / "r.db"), {"PYTHONPATH": str(module.parent)}


ROUTED = """\
name: routed
dag:
  nodes:
    - id: route
      handler: condition
      config: {cases: [{when: "true", then: [left]}], default: [right]}
    - {id: left, handler: noop, dependencies: [route]}
    - id: flaky
      handler: python
      dependencies: [left]
      retry: {max_attempts: 1}
      config: {function: "flakymod:once", params: {path: "@FLAG@"}}
    - {id: right, handler: noop, dependencies: [route]}
    - {id: right_tail, handler: noop, dependencies: [right]}
"""


def test_retry_after_failure_keeps_branch_not_taken(tmp_path: Path) -> None:
    flow, db, env = _setup(tmp_path, ROUTED)
    failed = states(orchestrion("run", str(flow), "--db", db, "--json", env=env))
    assert failed["_status"] == "FAILED"
    assert failed["right"] == failed["right_tail"] == "SKIPPED"
    retried = orchestrion("retry", failed["_id"], "--db", db, "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    after = states(retried)
    assert after["_status"] == "COMPLETED"
    assert after["flaky"] == "COMPLETED"
    assert after["right"] == after["right_tail"] == "SKIPPED"


def test_rerun_from_node_keeps_branch_not_taken(tmp_path: Path) -> None:
    flow, db, env = _setup(tmp_path, ROUTED)
    (tmp_path / "failed-once").touch()  # flaky succeeds at once
    done = states(orchestrion("run", str(flow), "--db", db, "--json", env=env))
    assert done["_status"] == "COMPLETED"
    rerun = orchestrion("retry", done["_id"], "--from-node", "left", "--db", db, "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    data = json.loads(rerun.stdout)
    assert data["nodes"]["left"]["attempt"] == 2
    assert data["nodes"]["route"]["attempt"] == 1
    assert data["nodes"]["right"]["state"] == data["nodes"]["right_tail"]["state"] == "SKIPPED"
    assert data["nodes"]["right"]["attempt"] == 0


def test_rerun_from_the_condition_decides_again(tmp_path: Path) -> None:
    flow, db, env = _setup(tmp_path, ROUTED)
    (tmp_path / "failed-once").touch()
    done = states(orchestrion("run", str(flow), "--db", db, "--json", env=env))
    rerun = orchestrion("retry", done["_id"], "--from-node", "route", "--db", db, "--json", env=env)
    assert rerun.returncode == 0, rerun.stderr
    data = json.loads(rerun.stdout)
    assert data["nodes"]["route"]["attempt"] == 2
    assert data["nodes"]["left"]["attempt"] == data["nodes"]["flaky"]["attempt"] == 2
    assert data["nodes"]["right"]["state"] == "SKIPPED"


WHEN = """\
name: guarded
dag:
  nodes:
    - {id: start, handler: noop}
    - {id: never, handler: noop, dependencies: [start], when: "false"}
    - {id: after_never, handler: noop, dependencies: [never], trigger_rule: all_done}
    - id: flaky
      handler: python
      dependencies: [start]
      retry: {max_attempts: 1}
      config: {function: "flakymod:once", params: {path: "@FLAG@"}}
"""


def test_retry_keeps_when_skips(tmp_path: Path) -> None:
    flow, db, env = _setup(tmp_path, WHEN)
    failed = states(orchestrion("run", str(flow), "--db", db, "--json", env=env))
    assert failed["_status"] == "FAILED"
    assert failed["never"] == "SKIPPED"
    retried = orchestrion("retry", failed["_id"], "--db", db, "--json", env=env)
    assert retried.returncode == 0, retried.stderr
    data = json.loads(retried.stdout)
    assert data["nodes"]["never"]["state"] == "SKIPPED"
    assert data["nodes"]["never"]["attempt"] == 1  # its `when:` is not evaluated again
    assert data["nodes"]["after_never"]["attempt"] == 1  # ran once, not again
