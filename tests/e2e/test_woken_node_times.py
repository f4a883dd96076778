"""A node woken by its own timer (a ``delay``) reports its first start, and a duration that
includes the wait, through ``orchestrion run`` and ``orchestrion status`` as real processes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_cli import orchestrion

pytestmark = pytest.mark.slow

FLOW = """\
name: napping
dag:
  nodes:
    - {id: nap, handler: delay, config: {seconds: 1}}
    - {id: after, handler: noop, dependencies: [nap]}
"""


def test_a_delay_reports_its_first_start_and_the_wait_in_its_duration(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    db = str(tmp_path / "t.db")
    ran = orchestrion("run", str(flow), "--db", db, "--json")
    assert ran.returncode == 0, ran.stderr
    data = json.loads(ran.stdout)
    nap = data["nodes"]["nap"]
    # The wait is a lower bound the node cannot beat: it slept at least its one second.
    assert nap["duration_ms"] >= 1000, nap
    status = orchestrion("status", data["execution_id"], "--db", db, "--json")
    shown = json.loads(status.stdout)["nodes"]["nap"]
    assert shown["started_at"] == nap["started_at"] and shown["duration_ms"] >= 1000


def test_the_wait_is_shown_apart_in_json_and_in_the_table(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    db = str(tmp_path / "t.db")
    ran = json.loads(orchestrion("run", str(flow), "--db", db, "--json").stdout)
    nap, after = ran["nodes"]["nap"], ran["nodes"]["after"]
    # The wait opens when the handler's answer is recorded, a moment after it set the timer.
    assert 900 <= nap["waited_ms"] <= nap["duration_ms"]
    assert after["waited_ms"] is None
    table = orchestrion("status", ran["execution_id"], "--db", db)
    assert table.returncode == 0, table.stderr
    assert "(waited 1." in table.stdout
