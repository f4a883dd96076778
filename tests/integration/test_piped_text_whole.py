"""Piped, a table's free text is whole: an error or an output longer than a terminal's cut
is printed in full, on its row's one line, by ``status`` and ``dlq list`` (a script reads
what a person would have had to open ``--json`` for). On a terminal it is still cut."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.engine.facade import Engine

LONG = "the upstream answered with something nobody expected " * 6  # ~320 characters
FLOW = {
    "name": "long-error",
    "dag": {
        "nodes": [
            {
                "id": "boom",
                "handler": "python",
                "retry": {"max_attempts": 1},
                "config": {"function": "fail", "params": {"message": LONG.strip()}},
            }
        ]
    },
}


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))  # not a terminal: piped


def test_status_and_dlq_list_piped_print_the_whole_message(tmp_path: Path) -> None:
    db = tmp_path / "long.db"

    async def failed() -> str:
        async with Engine(f"sqlite:///{db}") as engine:
            return (await engine.run(FLOW)).execution_id

    execution_id = asyncio.run(failed())
    shown = _cli("status", execution_id, "--db", str(db))
    assert shown.exit_code == 0, shown.output  # shown: the command did its work
    row = next(line for line in shown.output.splitlines() if line.startswith("boom"))
    assert LONG.strip() in row and "…" not in row
    listed = _cli("dlq", "list", "--db", str(db))
    assert listed.exit_code == 0, listed.output
    row = next(line for line in listed.output.splitlines() if execution_id in line)
    assert LONG.strip() in row and "…" not in row
