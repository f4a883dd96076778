"""PostgreSQL's own CPU per status read: the three questions one by one, or in one statement.

    .venv/bin/python bench/pg_status_reads.py --postgres postgresql://postgres@127.0.0.1/postgres

A status read needs an execution, its node runs and the journal events its result may read.
The PostgreSQL store asks them in one statement; this measures what that costs the server
against the three statements asked one after another on the same connection: CPU time of
the connection's backend (utime + stime from /proc; the server must run on this host) over
``--count`` reads of a completed 3-node execution, after a warm-up, ``--passes`` passes
each, alternating. A fresh database is created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import WORKFLOW
from bench.scaleout import admin, with_database

_TICKS = os.sysconf("SC_CLK_TCK")


def _backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


async def run(url: str, count: int, passes: int) -> None:
    import asyncpg

    from orchestrion.engine.facade import Engine
    from orchestrion.store.sql.core import _EVENTS, _EXECUTIONS
    from orchestrion.store.sql.pg_connection import numbered
    from orchestrion.store.sql.postgres import _SNAPSHOT, PostgresStore

    async with Engine(url) as engine:
        execution_id = (await engine.run(WORKFLOW, {"n": 1}, timeout=60)).execution_id
    kinds = ["execution.completed", "execution.failed", "node.completed"]
    execution_sql = numbered(f"{_EXECUTIONS} WHERE id = :e")[0]
    runs_sql = numbered(PostgresStore.NODE_RUNS)[0]
    events_sql = numbered(f"{_EVENTS} WHERE execution_id = :e AND type = ANY(:t) ORDER BY seq")[0]
    snapshot_sql = numbered(_SNAPSHOT)[0]
    conn: Any = await asyncpg.connect(url)
    try:
        pid = await conn.fetchval("SELECT pg_backend_pid()")

        async def three() -> None:
            await conn.fetchrow(execution_sql, execution_id)
            await conn.fetch(runs_sql, execution_id)
            await conn.fetch(events_sql, execution_id, kinds)

        async def one() -> None:
            await conn.fetchrow(snapshot_sql, execution_id, kinds)

        ways: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("three statements", three),
            ("one statement", one),
        ]
        for _ in range(passes):
            for name, read in ways:
                for _ in range(count // 10):
                    await read()
                began = _backend_cpu(pid)
                for _ in range(count):
                    await read()
                per_read = (_backend_cpu(pid) - began) / count
                print(f"{name}: {per_read * 1e6:.0f} us of PostgreSQL CPU per status read")
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", required=True, help="a maintenance database URL")
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    database = f"orchestrion_pg_status_{uuid.uuid4().hex[:10]}"
    asyncio.run(admin(args.postgres, f'CREATE DATABASE "{database}"'))
    try:
        asyncio.run(run(with_database(args.postgres, database), args.count, args.passes))
    finally:
        drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
        asyncio.run(admin(args.postgres, drop))


if __name__ == "__main__":
    main()
