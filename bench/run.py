"""Embedded-engine benchmarks, each workload in a fresh process (so peak RSS is its own).

    .venv/bin/python bench/run.py                 # every workload, 5 repetitions
    .venv/bin/python bench/run.py --only w1,w2 --repeat 9

Workloads (no-op nodes, SQLite file in WAL mode, every transition committed before it is
acted on):
    w1  1 root -> 1,000 parallel nodes -> 1 sink
    w2  200-node chain, each node passing its predecessor's output on through a template
    w2t the same chain with a no-op handler that has no run_now, so each attempt is an
        asyncio task of its own, as for http, llm and python nodes
    w3  200 concurrent executions of a 4-node diamond
    w4  validation of a 100,000-node DAG (load + schema + graph checks)
    m1  a map node over 10,000 items (no-op per item, 100 at a time)
The floor column is plain asyncio writing one SQLite row per transition (bench/floor.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import floor_run
from bench.workloads import chain, diamond, fan_out, map_items, wide_dag

WORKLOADS = {
    "w1": ("1 -> 1,000 -> 1 fan-out", lambda: [fan_out(1000)], 1002),
    "w2": ("200-node chain", lambda: [chain(200)], 200),
    "w2t": ("200-node chain, as tasks", lambda: [chain(200, TASK_NOOP)], 200),
    "w3": ("200 concurrent 4-node diamonds", lambda: [diamond()] * 200, 800),
    "m1": ("map over 10,000 items", lambda: [map_items(10_000)], 10_000),
}


TASK_NOOP = "noop_task"


def _registry() -> Any:
    """The built-in handlers, plus ``noop`` under another name and without ``run_now``."""
    from dataclasses import replace

    from orchestrion.handlers.builtin import builtin_specs
    from orchestrion.handlers.io import NOOP_SPEC
    from orchestrion.handlers.registry import HandlerRegistry

    registry = HandlerRegistry(builtin_specs())
    registry.register(replace(NOOP_SPEC, name=TASK_NOOP, aliases=(), run_now=None))
    return registry


async def _engine_once(definitions: list[dict[str, Any]], db: Path) -> float:
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{db}", registry=_registry()) as engine:
        stored = [await engine.submit(d) for d in {id(d): d for d in definitions}.values()]
        by_name = {s.name: s for s in stored}
        started = time.perf_counter()
        records = await asyncio.gather(
            *(engine.start_execution(by_name[d["name"]]) for d in definitions)
        )
        results = await asyncio.gather(*(engine.wait(r.id) for r in records))
        elapsed = time.perf_counter() - started
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return elapsed


def _worker(name: str, repeat: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if name == "w4":
            from orchestrion.handlers.loading import load_definition

            definition = wide_dag(100_000)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                load_definition(definition)
                times.append(time.perf_counter() - started)
            return {"engine": times, "floor": None, "nodes": 100_000}
        _title, build, nodes = WORKLOADS[name]
        engine_times, floor_times = [], []
        for i in range(repeat):
            engine_times.append(asyncio.run(_engine_once(build(), folder / f"e{i}.db")))
            if name != "m1":  # the floor has no notion of items inside one node
                floor_times.append(asyncio.run(floor_run(build(), folder / f"f{i}.db")))
        return {"engine": engine_times, "floor": floor_times or None, "nodes": nodes}


def main() -> None:
    from orchestrion.settings import claim_process

    claim_process()  # the process-wide tuning the CLI has (gc_freeze): the figures' setup
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", default="w1,w2,w2t,w3,w4,m1")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    if args.worker:
        result = _worker(args.worker, args.repeat)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    titles = {**{k: v[0] for k, v in WORKLOADS.items()}, "w4": "validate 100,000 nodes"}
    rows = []
    for name in args.only.split(","):
        out = subprocess.run(
            [sys.executable, __file__, "--worker", name, "--repeat", str(args.repeat)],
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        median = statistics.median(data["engine"])
        floor = statistics.median(data["floor"]) if data["floor"] else None
        rows.append(
            {
                "workload": name,
                "title": titles[name],
                "median_s": round(median, 4),
                "min_s": round(min(data["engine"]), 4),
                "nodes_per_s": round(data["nodes"] / median),
                "floor_median_s": round(floor, 4) if floor is not None else None,
                "ratio_to_floor": round(median / floor, 2) if floor else None,
                "peak_rss_mib": round(data["peak_rss_mib"], 1),
            }
        )
    header = (
        f"{'workload':<36} {'median':>9} {'min':>9} {'nodes/s':>9} {'floor':>9} "
        f"{'x floor':>8} {'RSS MiB':>8}"
    )
    print(f"python {platform.python_version()}, {platform.machine()}, repeat={args.repeat}")
    print(header)
    print("-" * len(header))
    for row in rows:
        floor_text = f"{row['floor_median_s']:.4f}s" if row["floor_median_s"] is not None else "-"
        ratio = f"{row['ratio_to_floor']:.2f}" if row["ratio_to_floor"] is not None else "-"
        print(
            f"{row['workload'] + ' ' + row['title']:<36} {row['median_s']:>8.4f}s "
            f"{row['min_s']:>8.4f}s {row['nodes_per_s']:>9} {floor_text:>9} {ratio:>8} "
            f"{row['peak_rss_mib']:>8}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
