"""What ``ORCHESTRION_SQLITE_SYNCHRONOUS=full`` (a commit survives a power loss) costs.

    .venv/bin/python bench/durability.py                   # 7 rounds
    .venv/bin/python bench/durability.py --rounds 3 --only w2f

Workloads, each through ``Engine("sqlite:///file.db")`` with the default settings but the
one under test, set as a user sets it (the environment variable):

- w1: 1 -> 1,000 -> 1 no-op fan-out; w3: 200 concurrent 4-node diamonds of no-ops;
- w2: a 200-node no-op chain (no-ops run inside the engine's turn: few commits);
- w2f: a 200-node chain of ``async def`` functions (the ``python`` handler), one commit per
  node at least: the workload where a flush per commit shows most.

Each measurement is a fresh process that runs the workload once and reports its wall time
(start of the executions to the end of the last, the definition already stored) and the
commits it made. Every round runs every (workload, setting) pair, the two settings in
alternating order, so a slow phase of the machine falls on both. The floor (bench/floor.py:
plain sqlite3, one commit per transition) runs in the same rounds at both settings too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor import floor_run
from bench.workloads import chain, diamond, fan_out

SETTINGS = ("normal", "full")


async def echo(value: Any = None) -> Any:
    """The function of every w2f node: passes its input on."""
    return value


def _function_chain(length: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for i in range(length):
        params = {"value": f"{{{{ f{i - 1}.output }}}}" if i else 0}
        node: dict[str, Any] = {
            "id": f"f{i}",
            "handler": "python",
            "config": {"function": "bench.durability:echo", "params": params},
        }
        if i:
            node["dependencies"] = [f"f{i - 1}"]
        nodes.append(node)
    return {"name": f"function-chain-{length}", "dag": {"nodes": nodes}}


WORKLOADS: dict[str, tuple[str, Any]] = {
    "w1": ("1 -> 1,000 -> 1 no-op fan-out", lambda: [fan_out(1000)]),
    "w2": ("200-node no-op chain", lambda: [chain(200)]),
    "w2f": ("200-node chain of async def functions", lambda: [_function_chain(200)]),
    "w3": ("200 concurrent no-op diamonds", lambda: [diamond()] * 200),
}


async def _engine(definitions: list[dict[str, Any]], db: Path) -> float:
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{db}") as engine:
        stored = {d["name"]: await engine.submit(d) for d in definitions}
        started = time.perf_counter()
        records = await asyncio.gather(
            *(engine.start_execution(stored[d["name"]]) for d in definitions)
        )
        results = await asyncio.gather(*(engine.wait(r.id) for r in records))
        elapsed = time.perf_counter() - started
    assert all(r.ok for r in results), [r.error for r in results if not r.ok][:3]
    return elapsed


def _worker(system: str, workload: str, setting: str) -> None:
    build = WORKLOADS[workload][1]
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "bench.db"
        if system == "engine":
            os.environ["ORCHESTRION_SQLITE_SYNCHRONOUS"] = setting
            elapsed = asyncio.run(_engine(build(), db))
        else:
            elapsed = asyncio.run(floor_run(build(), db, setting.upper()))
    print(json.dumps({"s": elapsed}))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--only", default="w1,w2,w2f,w3")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    workloads = args.only.split(",")
    systems = ["engine", "floor"]
    runs: dict[tuple[str, str, str], list[float]] = {}
    for round_no in range(args.rounds):
        order = SETTINGS if round_no % 2 == 0 else SETTINGS[::-1]
        for workload in workloads:
            for system in systems:
                if system == "floor" and workload == "w2f":
                    continue  # the floor runs no functions: its w2 is the same commits
                for setting in order:
                    done = subprocess.run(
                        [sys.executable, __file__, "--worker", system, workload, setting],
                        capture_output=True,
                        text=True,
                        cwd=Path(__file__).resolve().parent.parent,
                    )
                    if done.returncode:
                        raise SystemExit(f"{system} {workload} {setting}: {done.stderr}")
                    seconds = json.loads(done.stdout.splitlines()[-1])["s"]
                    runs.setdefault((system, workload, setting), []).append(seconds)
        print(f"round {round_no + 1} of {args.rounds} done", file=sys.stderr)
    print(f"{args.rounds} rounds, medians, settings alternating within each round")
    print()
    print("| workload | system | synchronous=NORMAL (default) | synchronous=FULL | FULL / NORMAL |")
    print("|---|---|---|---|---|")
    for workload in workloads:
        for system in systems:
            if (system, workload, "normal") not in runs:
                continue
            normal = statistics.median(runs[(system, workload, "normal")])
            full = statistics.median(runs[(system, workload, "full")])
            label = "Orchestrion" if system == "engine" else "floor"
            print(
                f"| {workload}: {WORKLOADS[workload][0]} | {label} | {normal:.4f} s "
                f"| {full:.4f} s | {full / normal:.2f}x |"
            )


if __name__ == "__main__":
    main()
