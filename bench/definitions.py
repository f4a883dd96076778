"""Validating a large definition from YAML against the same definition from JSON.

    .venv/bin/python bench/definitions.py                  # 100,000 nodes, 7 rounds
    .venv/bin/python bench/definitions.py --nodes 10000 --rounds 3

The definition is bench/workloads.py's ``wide_dag`` (node i depends on node (i - 1) // 2),
written once as a JSON file and once as a YAML file (block style, as people write YAML).
Each measurement is a fresh process that imports Orchestrion, then times
``load_definition(path)`` (read the file, parse, convert, model and graph checks; the size
limits lifted as for a trusted file), and reports that time, its CPU time, its resident
memory before the call and its peak (``getrusage``). On a busy machine the CPU time, which
other processes affect less than the wall time, is the steadier figure. Rounds alternate
the formats (JSON first in even rounds, YAML first in odd ones), so a slow phase of the
machine falls on both; the table gives medians, and the YAML / JSON ratios of the medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workloads import wide_dag


def _yaml_text(definition: dict[str, Any]) -> str:
    """Block-style YAML, written directly: PyYAML's emitter takes a minute at this size."""
    lines = [f"name: {definition['name']}", "dag:", "  nodes:"]
    for node in definition["dag"]["nodes"]:
        lines.append(f"    - id: {node['id']}")
        lines.append(f"      handler: {node['handler']}")
        if node.get("dependencies"):
            lines.append("      dependencies:")
            lines.extend(f"        - {dep}" for dep in node["dependencies"])
    return "\n".join(lines) + "\n"


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _worker(path: str) -> None:
    from orchestrion.definition.limits import DEFAULT_LIMITS
    from orchestrion.handlers.loading import load_definition

    before = _rss_mib()
    started, cpu_started = time.perf_counter(), time.process_time()
    loaded = load_definition(Path(path), limits=DEFAULT_LIMITS.for_own_files())
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    nodes = len(loaded.spec.dag.nodes)
    result = {"s": elapsed, "cpu_s": cpu, "before_mib": before, "peak_mib": peak, "nodes": nodes}
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--nodes", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.worker)
        return
    definition = wide_dag(args.nodes)
    with tempfile.TemporaryDirectory() as tmp:
        files = {"json": Path(tmp) / "dag.json", "yaml": Path(tmp) / "dag.yaml"}
        files["json"].write_text(json.dumps(definition, indent=2))
        files["yaml"].write_text(_yaml_text(definition))
        runs: dict[str, list[dict[str, float]]] = {"json": [], "yaml": []}
        for round_no in range(args.rounds):
            order = ["json", "yaml"] if round_no % 2 == 0 else ["yaml", "json"]
            for fmt in order:
                done = subprocess.run(
                    [sys.executable, __file__, "--worker", str(files[fmt])],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                result = json.loads(done.stdout)
                assert result["nodes"] == args.nodes, result
                runs[fmt].append(result)
            print(
                f"round {round_no + 1}: "
                + ", ".join(f"{f} {runs[f][-1]['s']:.3f} s" for f in ("json", "yaml")),
                file=sys.stderr,
            )
        sizes = {fmt: path.stat().st_size for fmt, path in files.items()}
    medians = {
        fmt: {
            key: statistics.median(r[key] for r in rs)
            for key in ("s", "cpu_s", "before_mib", "peak_mib")
        }
        for fmt, rs in runs.items()
    }
    print(f"{args.nodes:,} nodes, {args.rounds} rounds, medians, Python {sys.version.split()[0]}")
    print()
    print(
        "| format | file | load_definition | its CPU time | peak RSS | peak RSS above the imports |"
    )
    print("|---|---|---|---|---|---|")
    for fmt in ("json", "yaml"):
        m = medians[fmt]
        print(
            f"| {fmt.upper()} | {sizes[fmt] / 2**20:.1f} MiB | {m['s']:.3f} s | {m['cpu_s']:.3f} s "
            f"| {m['peak_mib']:.0f} MiB | {m['peak_mib'] - m['before_mib']:.0f} MiB |"
        )
    j, y = medians["json"], medians["yaml"]
    print()
    print(
        f"YAML / JSON: time {y['s'] / j['s']:.2f}x, CPU time {y['cpu_s'] / j['cpu_s']:.2f}x, "
        f"peak RSS {y['peak_mib'] / j['peak_mib']:.2f}x, "
        f"peak above the imports "
        f"{(y['peak_mib'] - y['before_mib']) / (j['peak_mib'] - j['before_mib']):.2f}x"
    )


if __name__ == "__main__":
    main()
