"""Draw bench/compare.py's results as a PNG: nodes/s per system and workload (log scale).

    bench/.venvs/plot/bin/python bench/chart.py bench/results/compare.json docs/compare.png

Runs in the plotting venv (matplotlib only), so the package's dependencies do not grow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here
import matplotlib.pyplot as plt

SHORT = {
    "w0": "w0 hello\n(whole process)",
    "w1": "w1 fan-out",
    "w2": "w2 chain",
    "w3": "w3 diamonds",
    "w4": "w4 big DAG",
    "w5": "w5 approvals",
}
ORDER = [
    "orchestrion",
    "floor",
    "dbos",
    "dbos-wal",
    "prefect",
    "prefect-persist",
    "dagster",
    "airflow",
]


def _label(workload: str) -> str:
    if workload.startswith("w6/"):  # one bar group per worker count
        return f"w6 scale-out\n{workload[3:].removesuffix('w')} worker(s)"
    return SHORT.get(workload, workload)


def main() -> None:
    results, png = Path(sys.argv[1]), Path(sys.argv[2])
    data = json.loads(results.read_text())
    cells = data["cells"]
    # Workloads no system measured (w6's peer rows) would only be empty columns.
    workloads = list(dict.fromkeys(c["workload"] for c in cells if c.get("nodes_per_s")))
    systems = [s for s in ORDER if any(c["system"] == s for c in cells)]
    systems += sorted({c["system"] for c in cells} - set(systems))
    rate = {(c["system"], c["workload"]): c.get("nodes_per_s") for c in cells}
    width = 0.8 / max(1, len(systems))
    fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(workloads) + 2), 4.8), dpi=110)
    for i, system in enumerate(systems):
        xs = [w + (i - (len(systems) - 1) / 2) * width for w in range(len(workloads))]
        heights = [rate.get((system, w)) or 0 for w in workloads]
        ax.bar(xs, heights, width, label=system)
        for x, w, h in zip(xs, workloads, heights, strict=True):
            if not h and (system, w) in rate:  # measured nothing: timeout or not run
                ax.text(x, 0.012, "x", ha="center", va="bottom", fontsize=8, color="grey")
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.01)
    ax.set_xticks(range(len(workloads)), [_label(w) for w in workloads], fontsize=8)
    ax.set_ylabel("nodes/s (log scale; higher is better)")
    quick = ", --quick sizes" if data.get("quick") else ""
    ax.set_title(f"Side by side, {data['started']}{quick}; x = timeout or not run", fontsize=10)
    ax.legend(
        fontsize=8, ncols=min(6, len(systems)), loc="upper center", bbox_to_anchor=(0.5, -0.08)
    )
    ax.grid(axis="y", which="major", alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)


if __name__ == "__main__":
    main()
