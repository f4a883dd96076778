"""The SQLite floor: plain asyncio, one SQLite row and one commit per state transition.

No engine at all: the fastest a durable embedded orchestrator could possibly be on this
machine with SQLite in WAL mode and ``synchronous=NORMAL``. Each node goes through three
transitions (queued, running, completed), each its own committed INSERT, and children are
released when their last parent completes.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

__all__ = ["floor_run", "floor_run_timed"]


def _graph(definition: dict[str, Any]) -> tuple[list[str], dict[str, list[str]], dict[str, int]]:
    nodes = definition["dag"]["nodes"]
    ids = [n["id"] for n in nodes]
    children: dict[str, list[str]] = {i: [] for i in ids}
    remaining = {n["id"]: len(n.get("dependencies", [])) for n in nodes}
    for node in nodes:
        for dep in node.get("dependencies", []):
            children[dep].append(node["id"])
    return ids, children, remaining


async def floor_run(
    definitions: list[dict[str, Any]], db: Path, synchronous: str = "NORMAL"
) -> float:
    """Run every definition concurrently to the end; return the wall time in seconds.

    ``synchronous``: NORMAL (survives a killed process) or FULL (a power loss too).
    """
    return (await floor_run_timed(definitions, db, synchronous))[0]


async def floor_run_timed(
    definitions: list[dict[str, Any]], db: Path, synchronous: str = "NORMAL"
) -> tuple[float, float]:
    """``floor_run``'s wall time, and this process's CPU time over the same span."""
    if synchronous not in ("NORMAL", "FULL"):
        raise ValueError(f"synchronous must be NORMAL or FULL, not {synchronous!r}")
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS transitions (execution INTEGER, node TEXT, state TEXT, at REAL)"
    )

    def write(execution: int, node: str, state: str) -> None:
        conn.execute("BEGIN")
        conn.execute(
            "INSERT INTO transitions VALUES (?, ?, ?, ?)", (execution, node, state, time.time())
        )
        conn.execute("COMMIT")

    async def run_one(execution: int, definition: dict[str, Any]) -> None:
        ids, children, remaining = _graph(definition)
        done = asyncio.Event()
        left = len(ids)

        async def node(node_id: str) -> None:
            nonlocal left
            write(execution, node_id, "running")
            await asyncio.sleep(0)  # the no-op work
            write(execution, node_id, "completed")
            left -= 1
            if not left:
                done.set()
            for child in children[node_id]:
                remaining[child] -= 1
                if remaining[child] == 0:
                    start(child)

        tasks: set[asyncio.Task[None]] = set()

        def start(node_id: str) -> None:
            write(execution, node_id, "queued")
            task = asyncio.create_task(node(node_id))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        for node_id in ids:
            if remaining[node_id] == 0:
                start(node_id)
        await done.wait()

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(run_one(i, d) for i, d in enumerate(definitions)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    conn.close()
    return elapsed, cpu
