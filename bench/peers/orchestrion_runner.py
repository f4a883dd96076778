"""Orchestrion's side of the comparison: embedded mode, SQLite file (WAL), its defaults.

    .venv/bin/python bench/peers/orchestrion_runner.py w1 [--quick]
    BENCH_MODE=async .venv/bin/python bench/peers/orchestrion_runner.py w1   # orchestrion-async

Every transition is committed before it is acted on (Orchestrion's only mode). The workload
definitions are bench/workloads.py's, the ones bench/run.py measures. Without BENCH_MODE the
nodes are the built-in ``noop`` handler, which runs inside the engine's turn (the engine's
own overhead); with ``async``, ``sync``, ``quick``, ``inline`` or ``inline-def``, w1-w3 run a
user function per node through the ``python`` handler (``async def``; ``def`` in a worker
thread; ``def`` registered with ``blocking=False``; ``async def`` or ``def`` registered with
``inline=True``), as a peer's workflow runs its steps.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import _common
from bench.workloads import chain, diamond, fan_out, wide_dag

HANDLER = _common.MODE or "noop"
if _common.MODE:  # the python variants' functions; a noop run, as w0, does not import them
    import bench.functions  # noqa: F401 - registers them for the python handler


def _version() -> str:
    from importlib.metadata import version

    return version("orchestrion")


async def _run_all(db: Path, definitions: list[dict[str, Any]]) -> float:
    """Submit each distinct definition, then start every execution and wait for all."""
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{db}") as engine:
        stored = {d["name"]: await engine.submit(d) for d in definitions}
        started = time.perf_counter()
        records = await asyncio.gather(
            *(engine.start_execution(stored[d["name"]]) for d in definitions)
        )
        results = await asyncio.gather(*(engine.wait(r.id) for r in records))
        elapsed = time.perf_counter() - started
    failed = [r.error for r in results if not r.ok]
    assert not failed, failed[:3]
    return elapsed


def w0(tmp: Path, _size: int) -> None:
    """One node, the whole script; the harness times the process from outside."""
    from orchestrion.engine.facade import Engine

    async def go() -> None:
        async with Engine(f"sqlite:///{tmp / 'hello.db'}") as engine:
            hello = {"name": "hello", "dag": {"nodes": [{"id": "hello", "handler": "noop"}]}}
            result = await engine.run(hello)
            assert result.ok, result.error

    asyncio.run(go())


def w1(tmp: Path, size: int) -> dict[str, Any]:
    return {"wall_s": asyncio.run(_run_all(tmp / "w1.db", [fan_out(size, HANDLER)]))}


def w2(tmp: Path, size: int) -> dict[str, Any]:
    return {"wall_s": asyncio.run(_run_all(tmp / "w2.db", [chain(size, HANDLER)]))}


def w3(tmp: Path, size: int) -> dict[str, Any]:
    return {"wall_s": asyncio.run(_run_all(tmp / "w3.db", [diamond(HANDLER)] * size))}


def w4(tmp: Path, size: int) -> dict[str, Any]:
    """Validate the DAG (load + schema + graph checks), then run it: both timed."""
    from orchestrion.handlers.loading import load_definition

    definition = wide_dag(size)
    started = time.perf_counter()
    load_definition(definition)
    validate = time.perf_counter() - started
    run = asyncio.run(_run_all(tmp / "w4.db", [definition]))
    return {"wall_s": validate + run, "validate_s": round(validate, 4), "run_s": round(run, 4)}


def w5(tmp: Path, size: int) -> dict[str, Any]:
    """``size`` executions parked on an approval node (no worker held), then all approved.

    wall_s is the time until every execution is committed as waiting; the peak RSS is then
    what holding them costs. ``decide_s`` is approving them all and waiting for the ends.
    """
    from orchestrion.engine.facade import Engine

    definition = {
        "name": "approve",
        "dag": {
            "nodes": [
                {"id": "prepare", "handler": "noop"},
                {"id": "ok", "handler": "approval", "dependencies": ["prepare"]},
                {"id": "after", "handler": "noop", "dependencies": ["ok"]},
            ]
        },
    }

    async def go() -> dict[str, Any]:
        async with Engine(f"sqlite:///{tmp / 'w5.db'}") as engine:
            stored = await engine.submit(definition)
            started = time.perf_counter()
            records = await asyncio.gather(*(engine.start_execution(stored) for _ in range(size)))
            settled = await asyncio.gather(*(engine.settle(r.id) for r in records))
            parked = time.perf_counter() - started
            assert all(s.status.value == "waiting" for s in settled), settled[0].status
            rss = _common.peak_rss_mib()
            started = time.perf_counter()
            await asyncio.gather(*(engine.decide(r.id, "ok", approved=True) for r in records))
            results = await asyncio.gather(*(engine.wait(r.id) for r in records))
            decide = time.perf_counter() - started
            assert all(r.ok for r in results)
        return {"wall_s": parked, "rss_waiting_mib": round(rss, 1), "decide_s": round(decide, 4)}

    return asyncio.run(go())


if __name__ == "__main__":
    from orchestrion.settings import claim_process

    claim_process()  # the process-wide tuning the CLI has (the collector's): the figures' setup
    _common.main(
        "orchestrion",
        _version,
        {"w0": w0, "w1": w1, "w2": w2, "w3": w3, "w4": w4, "w5": w5},
        "SQLite file, WAL, synchronous=NORMAL, every transition committed before acted on",
        modes=("async", "sync", "quick", "inline", "inline-def"),
    )
