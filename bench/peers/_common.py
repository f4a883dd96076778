"""What every runner shares: workload sizes, argument parsing and the one JSON line it prints.

Standard library only: the runners import this from their peer's own virtual environment,
where neither Orchestrion nor bench/ is installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Full sizes (issue #7) and the --quick ones used while developing on a shared machine.
SIZES: dict[str, dict[str, int]] = {
    "full": {"w1": 1000, "w2": 200, "w3": 200, "w4": 100_000, "w5": 10_000},
    "quick": {"w1": 100, "w2": 20, "w3": 20, "w4": 1000, "w5": 200},
}
# A tuned variant (bench/compare.py's dbos-wal, prefect-persist) is its peer's runner in the
# peer's venv with BENCH_MODE set; read at import, as a runner may need it before its peer's.
MODE = os.environ.get("BENCH_MODE", "")


def nodes_of(workload: str, size: int) -> int:
    """How many nodes (or executions, for w5) a workload of this size runs."""
    return {
        "w0": 1,
        "w1": size + 2,
        "w2": size,
        "w3": 4 * size,
        "w4": size,
        "w5": size,
    }[workload]


def peak_rss_mib() -> float:
    """Peak resident set of this process and its waited-for children (Linux: KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024


def main(
    system: str,
    version: Callable[[], str],
    workloads: dict[str, Callable[[Path, int], dict[str, Any] | None]],
    durability: str,
    modes: tuple[str, ...] = (),
) -> None:
    """Parse ``<workload> [--quick]``, run it in a fresh temp dir, print one JSON line.

    ``modes`` are the BENCH_MODE values the runner knows besides the default (empty); the
    line names the system ``<system>-<mode>`` then.

    A workload callable gets (temp dir, size) and returns None or extra fields; the wall time
    is measured here around the call, after imports and set-up the callable does not time
    itself (a callable may return ``{"wall_s": ...}`` to time only its own core).
    """
    parser = argparse.ArgumentParser(description=f"{system} benchmark runner")
    parser.add_argument("workload", choices=[*sorted(workloads), "prepare"])
    parser.add_argument("--quick", action="store_true", help="small sizes (development)")
    args = parser.parse_args()
    if MODE and MODE not in modes:
        parser.error(f"BENCH_MODE={MODE!r}: {system} knows {', '.join(modes) or 'none'}")
    system = f"{system}-{MODE}" if MODE else system
    if args.workload == "prepare":  # one-time set-up happens at import: nothing more to do
        os.write(1, b"\nBENCH-RESULT {}\n")
        return
    size = SIZES["quick" if args.quick else "full"].get(args.workload, 1)
    with tempfile.TemporaryDirectory(prefix=f"bench-{system}-") as tmp:
        started = time.perf_counter()
        extra = workloads[args.workload](Path(tmp), size) or {}
        wall = time.perf_counter() - started
        line = {
            "system": system,
            "workload": args.workload,
            "size": size,
            "nodes": nodes_of(args.workload, size),
            "wall_s": extra.pop("wall_s", wall),
            "peak_rss_mib": round(peak_rss_mib(), 1),
            "version": version(),
            "python": sys.version.split()[0],
            "durability": durability,
            **extra,
        }
    sys.stdout.flush()
    # A marker the harness looks for: peers print logs of their own on stdout.
    os.write(1, ("\nBENCH-RESULT " + json.dumps(line) + "\n").encode())
