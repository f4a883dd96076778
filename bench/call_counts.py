"""Python calls inside one timed run of a workload, under cProfile: an exact figure where wall
times are too noisy to tell two trees apart.

    .venv/bin/python bench/call_counts.py              # w1: 1 -> 1,000 -> 1 no-op fan-out
    .venv/bin/python bench/call_counts.py --workload w2t
    .venv/bin/python bench/call_counts.py --workload w3 --handler async --warm 2
    PYTHONPATH=<other tree>/src .venv/bin/python bench/call_counts.py   # another tree

An ``Engine`` on a SQLite file in a temporary directory runs the workload ``--warm`` times
(default once) to warm up, then once under the profiler (``start_execution`` and ``wait``, as
``bench/run.py`` times them); prints the total and primitive call counts and the functions
with the most own time. ``--handler`` is what w1, w2 and w3 run per node (``bench/run.py``'s
``--handlers``: ``noop`` by default, ``async``, ``sync`` or ``quick`` for a user function);
``--warm 0`` counts a fresh engine's first run. ``--capture`` turns node log capture on, as
the ``orchestrion`` commands have it.
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
from bench.workloads import HANDLERS, chain, diamond, fan_out

# name -> (definition for a handler, how many executions run at once)
WORKLOADS = {
    "w1": (lambda handler: fan_out(1000, handler), 1),
    "w2": (lambda handler: chain(200, handler), 1),
    "w2t": (lambda _handler: chain(200, TASK_NOOP), 1),
    "w3": (lambda handler: diamond(handler), 200),
}


async def _profile(
    definition: dict[str, Any], copies: int, db: Path, capture: bool, warm: int
) -> pstats.Stats:
    from orchestrion.engine.facade import Engine
    from orchestrion.settings import load_settings

    settings = load_settings(database_url=f"sqlite:///{db}", capture_node_logs=capture)
    async with Engine(settings=settings, registry=_registry()) as engine:
        stored = await engine.submit(definition)

        async def once() -> list[Any]:
            records = await asyncio.gather(*(engine.start_execution(stored) for _ in range(copies)))
            return await asyncio.gather(*(engine.wait(record.id) for record in records))

        for _ in range(warm):
            assert all(result.ok for result in await once())
        profile = cProfile.Profile()
        profile.enable()
        results = await once()
        profile.disable()
        assert all(result.ok for result in results), [r.error for r in results if not r.ok]
    return pstats.Stats(profile)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="w1")
    parser.add_argument("--handler", choices=HANDLERS, default="noop")
    parser.add_argument("--warm", type=int, default=1, help="runs before the profiled one")
    parser.add_argument("--capture", action="store_true", help="node log capture on")
    args = parser.parse_args()
    import orchestrion

    if args.handler != "noop":
        import bench.functions  # noqa: F401 - registers the python variants' functions
    build, copies = WORKLOADS[args.workload]
    with tempfile.TemporaryDirectory() as tmp:
        stats = asyncio.run(
            _profile(build(args.handler), copies, Path(tmp) / "calls.db", args.capture, args.warm)
        )
    print(f"{args.workload} {args.handler} with {orchestrion.__file__}:", end="")
    print(f" {stats.total_calls} calls ({stats.prim_calls} primitive)")
    stats.sort_stats("tottime").print_stats(8)


if __name__ == "__main__":
    main()
