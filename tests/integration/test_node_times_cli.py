"""``orchestrion status`` gives each node the time the API gives it (``duration_ms``): its
attempt's, without the backoff before a retry or the node's compensation."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from saga_flows import slow_undo_saga

FLOW = slow_undo_saga(
    "timed-saga",
    0.8,
    {
        "max_attempts": 2,
        "initial_delay": 0.8,
        "max_delay": 0.8,
        "jitter": "none",
        "retry_on": ["all"],
    },
)


def _status(db: Path, execution_id: str, *flags: str) -> str:
    ran = CliRunner().invoke(cli, ["status", execution_id, "--db", str(db), *flags])
    assert ran.exit_code == 0, ran.output
    return ran.output


def test_status_shows_each_nodes_time_as_the_api_does(tmp_path: Path) -> None:
    db = tmp_path / "t.db"

    async def run() -> str:
        async with Engine(f"sqlite:///{db}") as engine:
            result = await engine.run(FLOW, timeout=20)
            assert result.status is ExecutionStatus.FAILED
            return result.execution_id

    execution_id = asyncio.run(run())
    nodes: dict[str, Any] = json.loads(_status(db, execution_id, "--json"))["nodes"]
    lines = [line.split() for line in _status(db, execution_id).splitlines()]
    rows = {line[0]: line for line in lines if line}
    assert rows["node"][:4] == ["node", "state", "attempts", "time"]
    for node in ("a", "b"):
        shown = rows[node][3]
        assert shown == f"{nodes[node]['duration_ms'] / 1000:.3f}s", (node, shown, nodes[node])
    # Neither a's compensation (0.8 s) nor b's backoff before its second attempt (0.8 s).
    assert float(rows["a"][3].rstrip("s")) < 0.5
    assert float(rows["b"][3].rstrip("s")) < 0.5
    assert rows["b"][2] == "2"
