"""Python calls inside one timed run of a workload, under cProfile: an exact figure where wall
times are too noisy to tell two trees apart.

    .venv/bin/python bench/call_counts.py              # w1: 1 -> 1,000 -> 1 no-op fan-out
    .venv/bin/python bench/call_counts.py --workload w2t
    PYTHONPATH=<other tree>/src .venv/bin/python bench/call_counts.py   # another tree

An ``Engine`` on a SQLite file in a temporary directory runs the workload once to warm up,
then once under the profiler (``start_execution`` and ``wait``, as ``bench/run.py`` times
them); prints the total and primitive call counts and the functions with the most own time.
``--capture`` turns node log capture on, as the ``orchestrion`` commands have it.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import TASK_NOOP, _registry
from bench.workloads import chain, fan_out

WORKLOADS = {
    "w1": lambda: fan_out(1000),
    "w2": lambda: chain(200),
    "w2t": lambda: chain(200, TASK_NOOP),
}


async def _profile(definition: dict[str, Any], db: Path, capture: bool) -> pstats.Stats:
    from orchestrion.engine.facade import Engine
    from orchestrion.settings import load_settings

    settings = load_settings(database_url=f"sqlite:///{db}", capture_node_logs=capture)
    async with Engine(settings=settings, registry=_registry()) as engine:
        stored = await engine.submit(definition)
        assert (await engine.run(definition, {})).ok  # warm-up
        profile = cProfile.Profile()
        profile.enable()
        record = await engine.start_execution(stored)
        result = await engine.wait(record.id)
        profile.disable()
        assert result.ok, result.error
    return pstats.Stats(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="w1")
    parser.add_argument("--capture", action="store_true", help="node log capture on")
    args = parser.parse_args()
    import orchestrion

    with tempfile.TemporaryDirectory() as tmp:
        stats = asyncio.run(
            _profile(WORKLOADS[args.workload](), Path(tmp) / "calls.db", args.capture)
        )
    print(f"{args.workload} with {orchestrion.__file__}: {stats.total_calls} calls", end="")
    print(f" ({stats.prim_calls} primitive)")
    stats.sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
