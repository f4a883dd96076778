"""Compensation (saga) as a user meets it in embedded mode: a real ``orchestrion run`` on a
SQLite file undoes the nodes that completed, in reverse order, when a node fails or the
execution times out. The failed node is not undone (it stays FAILED and is a dead letter),
a node still running at the timeout is abandoned, not undone, and a compensation that fails
is shown in ``orchestrion status`` (table and ``--json``) on its node and in the execution's
error."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from test_cli import orchestrion

pytestmark = pytest.mark.slow

FNS = """\
import time


def _log(tag):
    import os
    with open(os.environ["SAGA_LOG"], "a", encoding="utf-8") as fh:
        fh.write(tag + "\\n")


def sleepy(s, tag):
    time.sleep(s)
    _log("done-" + tag)
    return tag


def comp(tag):
    _log("comp-" + tag)
    return tag


def broken(tag):
    raise ValueError("comp " + tag + " broke")


def boom():
    raise ValueError("boom went d")
"""


def node(node_id: str, seconds: float, deps: list[str], undo: str = "comp") -> str:
    return (
        f"    - id: {node_id}\n"
        f"      handler: python\n"
        f"      dependencies: {json.dumps(deps)}\n"
        f'      config: {{function: "fns:sleepy", params: {{s: {seconds}, tag: {node_id}}}}}\n'
        f"      compensate:\n"
        f"        handler: python\n"
        f'        config: {{function: "fns:{undo}", params: {{tag: {node_id}}}}}\n'
    )


def _setup(tmp_path: Path, flow: str) -> tuple[Path, Path, Path, dict[str, str]]:
    mods = tmp_path / "mods"
    mods.mkdir()
    (mods / "fns.py").write_text(FNS)
    path = tmp_path / "flow.yaml"
    path.write_text(flow)
    log = tmp_path / "saga.log"
    python_path = os.pathsep.join([str(mods), os.environ.get("PYTHONPATH", "")])
    return path, tmp_path / "saga.db", log, {"PYTHONPATH": python_path, "SAGA_LOG": str(log)}


def test_a_failure_undoes_the_completed_nodes_only_and_shows_a_broken_compensation(
    tmp_path: Path,
) -> None:
    flow = (
        "name: saga\non_failure: compensate\ndag:\n  nodes:\n"
        + node("a", 0, [], undo="broken")
        + node("b", 0, ["a"])
        + node("b2", 0, ["a"])
        + node("c", 0, ["b", "b2"])
        + "    - id: d\n      handler: python\n      dependencies: [c]\n"
        '      config: {function: "fns:boom"}\n      retry: {max_attempts: 1}\n'
        '      compensate: {handler: python, config: {function: "fns:comp", params: {tag: d}}}\n'
    )
    path, db, log, env = _setup(tmp_path, flow)
    ran = orchestrion("run", str(path), "--db", str(db), "--json", env=env)
    assert ran.returncode == 1, ran.stderr
    execution_id = json.loads(ran.stdout)["execution_id"]
    comps = [line for line in log.read_text().split() if line.startswith("comp-")]
    assert comps[0] == "comp-c" and sorted(comps[1:]) == ["comp-b", "comp-b2"]  # never comp-d

    status = orchestrion("status", execution_id, "--db", str(db), "--json", env=env)
    data = json.loads(status.stdout)
    nodes = data["nodes"]
    assert {n: nodes[n]["state"] for n in nodes} == {
        "a": "COMPLETED",
        "b": "COMPENSATED",
        "b2": "COMPENSATED",
        "c": "COMPENSATED",
        "d": "FAILED",
    }
    assert "boom went d" in nodes["d"]["error"]["message"]
    assert nodes["a"]["compensation"] == "failed" and nodes["c"]["compensation"] == "done"
    assert nodes["a"]["error"]["message"].endswith("comp a broke")
    assert data["error"]["nodes"] == ["d"] and data["error"]["compensation_failed"] == ["a"]
    assert "compensation failed: a" in data["error"]["message"]

    table = orchestrion("status", execution_id, "--db", str(db), env=env)
    assert table.returncode == 0, table.stderr
    [row_a] = [line for line in table.stdout.splitlines() if line.strip("│ ").startswith("a ")]
    assert "compensation failed" in row_a and "comp a broke" in row_a, table.stdout
    [row_d] = [line for line in table.stdout.splitlines() if line.strip("│ ").startswith("d ")]
    assert "failed" in row_d and "compensated" not in row_d, table.stdout
    assert "compensation failed: a" in " ".join(table.stdout.split())

    # A run's progress lines say it as it happens.
    again = orchestrion("run", str(path), "--db", str(db), env=env)
    assert again.returncode == 1
    [line] = [ln for ln in again.stderr.splitlines() if "compensation_failed" in ln]
    assert " a " in line and "comp a broke" in line

    letters = orchestrion("dlq", "list", "--db", str(db), "--json", env=env)
    listed = [item["id"] for item in json.loads(letters.stdout)["items"]]
    assert f"{execution_id}.d" in listed and len(listed) == 2  # d of each run, nothing else


def test_a_timeout_undoes_what_completed_and_abandons_what_still_ran(tmp_path: Path) -> None:
    flow = (
        "name: saga-timeout\ntimeout: 1s\ndag:\n  nodes:\n" + node("a", 0, []) + node("s", 3, ["a"])
    )
    path, db, log, env = _setup(tmp_path, flow)
    ran = orchestrion("run", str(path), "--db", str(db), "--json", env=env)
    assert ran.returncode == 1, ran.stderr
    data = json.loads(ran.stdout)
    assert data["status"] == "FAILED" and data["error"]["category"] == "timeout"
    assert data["nodes"]["a"]["state"] == "COMPENSATED"
    assert data["nodes"]["s"]["state"] == "FAILED"
    assert data["nodes"]["s"]["compensation"] is None
    # s's action (a thread nothing can stop) may still end on its own: it is never undone
    lines = log.read_text().split()
    assert lines[:2] == ["done-a", "comp-a"] and "comp-s" not in lines
