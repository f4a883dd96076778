"""Embedded-engine benchmarks, each workload in a fresh process (so peak RSS is its own).

    .venv/bin/python bench/run.py                 # every workload, 5 rounds
    .venv/bin/python bench/run.py --only w1,w2,w3 --repeat 9 --handlers async,sync

Workloads (SQLite file in WAL mode, every transition committed before it is acted on):
    w1  1 root -> 1,000 parallel nodes -> 1 sink
    w2  200-node chain, each node passing its predecessor's output on through a template
    w3  200 concurrent executions of a 4-node diamond
    w2t the w2 chain with a no-op handler that has no run_now, so each attempt is an
        asyncio task of its own
    w4  validation of a 100,000-node DAG (load + schema + graph checks)
    m1  a map node over 10,000 items (no-op per item, 100 at a time)
w1, w2 and w3 run once per handler of --handlers in each round: ``async``, ``sync``, ``quick``
and ``inline`` are a user function per node through the ``python`` handler (``async def``;
``def``, in a worker thread; ``def`` registered with ``blocking=False``, on the event loop;
``async def`` registered with ``inline=True``, inside the engine's turn; ``inline-def``
the same with a ``def``; see
bench/functions.py; the headline rows), ``noop`` the built-in no-op handler, which runs
inside the engine's turn (the engine's own overhead). Definitions are validated and stored
before the clock starts: the timing is from the first start to the last end. Within each
round the floor and every handler run in turn, in one process, so a drift of the machine's
speed hits them alike. The floor column is plain asyncio writing one SQLite row per
transition (bench/floor.py). "CPU x fl" is the least CPU time this process spent in the timed
part over the floor's: on a machine shared with other work, it moves less than wall time.
With --history N every round's file already holds N earlier executions (one-node runs, made
once and copied for each round; the floor's file as many rows per transition), as a
database that has been in use does: what each new execution's rows cost among theirs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import floor_run_timed
from bench.workloads import HANDLERS, chain, diamond, fan_out, map_items, node, wide_dag

Build = Callable[..., list[dict[str, Any]]]  # (handler="noop") -> definitions
WORKLOADS: dict[str, tuple[str, Build, int]] = {
    "w1": ("1 -> 1,000 -> 1 fan-out", lambda h="noop": [fan_out(1000, h)], 1002),
    "w2": ("200-node chain", lambda h="noop": [chain(200, h)], 200),
    "w2t": ("200-node chain, as tasks", lambda h="noop": [chain(200, TASK_NOOP)], 200),
    "w3": ("200 concurrent 4-node diamonds", lambda h="noop": [diamond(h)] * 200, 800),
    "m1": ("map over 10,000 items", lambda h="noop": [map_items(10_000)], 10_000),
}
# The workloads run once per handler of --handlers; the others with their own handler only.
PER_HANDLER = ("w1", "w2", "w3")


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


async def _engine_once(definitions: list[dict[str, Any]], db: Path) -> tuple[float, float]:
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{db}", registry=_registry()) as engine:
        stored = [await engine.submit(d) for d in {id(d): d for d in definitions}.values()]
        by_name = {s.name: s for s in stored}
        started, cpu = time.perf_counter(), time.process_time()
        records = await asyncio.gather(
            *(engine.start_execution(by_name[d["name"]]) for d in definitions)
        )
        results = await asyncio.gather(*(engine.wait(r.id) for r in records))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return elapsed, cpu


async def _history(db: Path, executions: int) -> None:
    """Make ``db`` a file that holds ``executions`` ended one-node executions."""
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{db}") as engine:
        stored = await engine.submit({"name": "history", "dag": {"nodes": [node("a")]}})
        for start in range(0, executions, 500):
            count = min(500, executions - start)
            records = await asyncio.gather(*(engine.start_execution(stored) for _ in range(count)))
            await asyncio.gather(*(engine.wait(r.id) for r in records))


def _floor_history(db: Path, executions: int) -> None:
    """The floor's ``_history``: three rows per execution of one node, one transaction."""
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE transitions (execution INTEGER, node TEXT, state TEXT, at REAL)")
    rows = [(-1 - i, "a", state, 0.0) for i in range(executions) for state in STATES]
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO transitions VALUES (?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


STATES = ("queued", "running", "completed")


def _fresh(template: Path | None, db: Path) -> Path:
    """``db``, a copy of ``template`` when there is one (the history every round starts from)."""
    if template is not None:
        shutil.copyfile(template, db)
    return db


def _worker(name: str, repeat: int, handlers: list[str], history: int = 0) -> dict[str, Any]:
    import bench.functions  # noqa: F401 - registers the python variants' functions

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        engine_template = floor_template = None
        if history and name in WORKLOADS:
            engine_template, floor_template = folder / "history.db", folder / "floor-history.db"
            asyncio.run(_history(engine_template, history))
            _floor_history(floor_template, history)
        if name == "w4":
            from orchestrion.handlers.loading import load_definition

            definition = wide_dag(100_000)
            times = []
            for _ in range(repeat):
                started = time.perf_counter()
                load_definition(definition)
                times.append(time.perf_counter() - started)
            return {"engine": {"-": times}, "cpu": {}, "floor": None, "nodes": 100_000}
        _title, build, nodes = WORKLOADS[name]
        if name not in PER_HANDLER:
            handlers = ["-"]
        engine_times: dict[str, list[float]] = {h: [] for h in handlers}
        cpu_times: dict[str, list[float]] = {h: [] for h in [*handlers, "floor"]}
        floor_times = []
        for i in range(repeat):  # one round: the floor, then each handler, in turn
            if name != "m1":  # the floor has no notion of items inside one node
                floor_db = _fresh(floor_template, folder / f"f{i}.db")
                wall, cpu = asyncio.run(floor_run_timed(build("noop"), floor_db))
                floor_times.append(wall)
                cpu_times["floor"].append(cpu)
            for handler in handlers:
                db = _fresh(engine_template, folder / f"e{i}-{handler}.db")
                wall, cpu = asyncio.run(_engine_once(build(handler), db))
                engine_times[handler].append(wall)
                cpu_times[handler].append(cpu)
        return {
            "engine": engine_times,
            "cpu": cpu_times,
            "floor": floor_times or None,
            "nodes": nodes,
        }


def main() -> None:
    from orchestrion.settings import claim_process

    claim_process()  # the process-wide tuning the CLI has (the collector's): the figures' setup
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--only", default="w1,w2,w2t,w3,w4,m1")
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="earlier executions every round's file holds (w1, w2, w3, w2t, m1)",
    )
    parser.add_argument(
        "--handlers",
        default=",".join(HANDLERS),
        help="what w1, w2 and w3 run per node: async, sync, quick, inline, inline-def (a python"
        " function), noop",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    handlers = args.handlers.split(",")
    unknown = sorted(set(handlers) - set(HANDLERS))
    if unknown:
        parser.error(f"--handlers: unknown {unknown}; choose from {', '.join(HANDLERS)}")
    if args.worker:
        result = _worker(args.worker, args.repeat, handlers, args.history)
        result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return

    titles = {**{k: v[0] for k, v in WORKLOADS.items()}, "w4": "validate 100,000 nodes"}
    labels = {
        "async": "async def",
        "sync": "def",
        "quick": "def, quick",
        "inline": "async def, inline",
        "inline-def": "def, inline",
        "noop": "noop",
        "-": "",
    }
    rows = []
    for name in args.only.split(","):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                name,
                "--repeat",
                str(args.repeat),
                "--history",
                str(args.history),
                "--handlers",
                args.handlers,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        data = json.loads(out.stdout.strip().splitlines()[-1])
        floor = statistics.median(data["floor"]) if data["floor"] else None
        floor_cpu = min(data["cpu"]["floor"]) if data["cpu"].get("floor") else None
        for handler, times in data["engine"].items():
            median = statistics.median(times)
            cpu = min(data["cpu"][handler]) if data["cpu"].get(handler) else None
            rows.append(
                {
                    "workload": name,
                    "title": titles[name],
                    "handler": handler if handler != "-" else None,
                    "median_s": round(median, 4),
                    "min_s": round(min(times), 4),
                    "nodes_per_s": round(data["nodes"] / median),
                    "floor_median_s": round(floor, 4) if floor is not None else None,
                    "ratio_to_floor": round(median / floor, 2) if floor else None,
                    "cpu_min_s": round(cpu, 4) if cpu is not None else None,
                    "cpu_ratio_to_floor": round(cpu / floor_cpu, 2) if cpu and floor_cpu else None,
                    "peak_rss_mib": round(data["peak_rss_mib"], 1),
                }
            )
    header = (
        f"{'workload':<36} {'handler':<17} {'median':>9} {'min':>9} {'nodes/s':>9} "
        f"{'floor':>9} {'x floor':>8} {'CPU x fl':>8} {'RSS MiB':>8}"
    )
    print(
        f"python {platform.python_version()}, {platform.machine()}, {args.repeat} rounds; "
        "each round runs the floor and every handler in turn (interleaved);\n"
        "timed: first start to last end (definitions validated and stored before); "
        f"each file holds {args.history} earlier executions; "
        "CPU x fl: least CPU time of the timed part over the floor's (less hit by others' load);\n"
        "handler: python async def / def (thread) / def blocking=False / async def or def "
        "inline=True function per node, or the built-in noop"
    )
    print(header)
    print("-" * len(header))
    for row in rows:
        floor_text = f"{row['floor_median_s']:.4f}s" if row["floor_median_s"] is not None else "-"
        ratio = f"{row['ratio_to_floor']:.2f}" if row["ratio_to_floor"] is not None else "-"
        cpu_ratio = row["cpu_ratio_to_floor"]
        cpu_text = f"{cpu_ratio:.2f}" if cpu_ratio is not None else "-"
        print(
            f"{row['workload'] + ' ' + row['title']:<36} {labels[row['handler'] or '-']:<17} "
            f"{row['median_s']:>8.4f}s {row['min_s']:>8.4f}s {row['nodes_per_s']:>9} "
            f"{floor_text:>9} {ratio:>8} {cpu_text:>8} {row['peak_rss_mib']:>8}"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
