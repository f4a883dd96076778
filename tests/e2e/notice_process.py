"""An engine process whose notice sink appends each notice to a file (the crash tests run it).

    python notice_process.py DB OUT MODE

MODE ``start-hang``: start the DORA example without documents (it escalates, then waits for an
approval) and hang in the sink after writing each notice, so a SIGKILL lands after the notice
is journalled and handed over but before any sink confirmed it. MODE ``resume``: an engine on
the same database that recovers the execution and exits once every notice is confirmed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from orchestrion.core.notices import Notice
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DORA = ROOT / "examples/reference/dora-compliance-assessment.yaml"
TEAMS = ROOT / "examples/teams.yaml"


class FileSink:
    """Appends ``key kind`` per notice (fsynced); ``hang``: then never returns."""

    def __init__(self, path: str, hang: bool) -> None:
        self.path = path
        self.hang = hang

    async def deliver(self, notices: Sequence[Notice]) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            for notice in notices:
                os.write(fd, f"{notice.key} {notice.kind}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if self.hang:
            await asyncio.Event().wait()


def _confirmed(db: str) -> int:
    with sqlite3.connect(db) as conn:
        query = "SELECT count(*) FROM events WHERE type = 'execution.notice_delivered'"
        return int(conn.execute(query).fetchone()[0])


async def main(db: str, out: str, mode: str) -> None:
    settings = load_settings(database_url=f"sqlite:///{db}", teams_file=str(TEAMS))
    sink = FileSink(out, hang=mode == "start-hang")
    async with Engine(settings=settings, notice_sinks=[sink]) as engine:
        if mode == "start-hang":
            record = await engine.start_execution(DORA, {"documents": []})
            print(json.dumps({"execution_id": record.id}), flush=True)
            await asyncio.Event().wait()  # killed here
        for _ in range(1000):
            if _confirmed(db) >= 2:
                return
            await asyncio.sleep(0.02)
        raise SystemExit("the notices were never confirmed")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
