"""The store work behind the API's hot routes, in process: CPU and round trips per operation.

    .venv/bin/python bench/api_store.py                                  # SQLite
    .venv/bin/python bench/api_store.py --postgres postgresql://postgres@127.0.0.1/postgres
    PYTHONPATH=<other tree>/src .venv/bin/python bench/api_store.py ...  # another tree

An ``Engine`` that drives nothing (as an API replica of a scale-out deployment) on a fresh
SQLite file or PostgreSQL database, and what the routes ask of it:

    submit   submit a 3-node definition already stored (``POST /v1/workflow`` of the same
             definition again) and create a pending execution of it
    status   the record and result of a completed execution (``GET /v1/workflows/{id}``)

Per operation: CPU time of this process (``time.process_time``) over ``--count`` operations
after a warm-up, the least of ``--passes`` passes, and the writes to PostgreSQL's sockets (each
request asyncpg sends is one write and one round trip). With PostgreSQL, the database is
created for the run and dropped after it.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.selector_events
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.api import WORKFLOW
from bench.scaleout import admin, with_database

_writes = {"postgres": 0}
_write = asyncio.selector_events._SelectorSocketTransport.write


def _counting_write(self: Any, data: Any) -> None:
    peer = self._extra.get("peername")
    if isinstance(peer, tuple) and len(peer) > 1 and peer[1] == 5432:
        _writes["postgres"] += 1
    _write(self, data)


asyncio.selector_events._SelectorSocketTransport.write = _counting_write  # type: ignore[method-assign]


async def _measure(
    name: str, step: Callable[[], Awaitable[Any]], count: int, passes: int
) -> dict[str, Any]:
    cpu: list[float] = []
    trips: list[float] = []
    for _ in range(passes):
        for _ in range(count // 10):
            await step()
        writes, began = _writes["postgres"], time.process_time()
        for _ in range(count):
            await step()
        cpu.append((time.process_time() - began) / count)
        trips.append((_writes["postgres"] - writes) / count)
    return {"operation": name, "cpu_us": min(cpu) * 1e6, "round_trips": min(trips)}


async def run(url: str, count: int, passes: int) -> list[dict[str, Any]]:
    from orchestrion.definition.loader import load_definition
    from orchestrion.engine.facade import Engine

    text = json.dumps(WORKFLOW) + "\n"
    async with Engine(url) as runner:
        done = await runner.run(WORKFLOW, {"n": 1}, timeout=60)
    async with Engine(url, drive=False) as engine:

        async def submit() -> None:
            loaded = load_definition(text, fmt="json", registry=engine.registry)
            definition = await engine.submit(loaded)
            await engine.create_execution(definition.id)

        async def status() -> None:
            if hasattr(engine, "status"):
                await engine.status(done.execution_id)
            else:  # a tree before the one-read status
                record = await engine.reads.execution(done.execution_id)
                await engine.result(done.execution_id, record=record)

        return [
            await _measure("submit", submit, count, passes),
            await _measure("status", status, count, passes),
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", help="a maintenance database URL (else SQLite)")
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()
    database = None
    if args.postgres:
        database = f"orchestrion_api_store_{uuid.uuid4().hex[:10]}"
        asyncio.run(admin(args.postgres, f'CREATE DATABASE "{database}"'))
        url = with_database(args.postgres, database)
    else:
        url = f"sqlite:///{Path(tempfile.mkdtemp()) / 'bench.db'}"
    try:
        rows = asyncio.run(run(url, args.count, args.passes))
    finally:
        if database is not None:
            drop = f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'
            asyncio.run(admin(args.postgres, drop))
    store = "postgresql" if database else "sqlite"
    for row in rows:
        trips = f", {row['round_trips']:.1f} round trips" if database else ""
        print(f"{store} {row['operation']}: {row['cpu_us']:.0f} us CPU{trips}")


if __name__ == "__main__":
    main()
