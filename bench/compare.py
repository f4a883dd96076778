"""Side by side: the same workloads on Orchestrion, the SQLite floor, DBOS, Prefect, Dagster and
Airflow, each peer in a virtual environment of its own, every run in a fresh process.

    .venv/bin/python bench/compare.py                       # everything, 3 repetitions
    .venv/bin/python bench/compare.py --systems orchestrion,floor,dbos --workloads w0,w1,w2,w3
    .venv/bin/python bench/compare.py --quick --repeat 1    # small sizes, while developing

Workloads (each system with its durable default, see bench/peers/*_runner.py; a peer's node is
a function of its own that returns at once; Orchestrion runs w1-w3 three ways: an ``async def``
and a ``def`` user function per node through the ``python`` handler, the headline rows, and the
built-in ``noop`` handler, its engine's own overhead):
    w0  hello: one node; the whole process (interpreter, imports, set-up) timed from outside
    w1  1 root -> 1,000 parallel nodes -> 1 sink
    w2  200-node chain, each node passing its predecessor's output on
    w3  200 concurrent executions of a 4-node diamond
    w4  100,000-node DAG: validate, then run
    w5  10,000 executions waiting on an approval (memory); then all approved
    w6  scale-out throughput on PostgreSQL + Redis with 1, 2 and 4 workers (bench/scaleout.py,
        Orchestrion only)
Every (system, workload) runs --repeat times, each in a fresh process, round by round: each
round runs every system once, so a drift of the machine's speed hits them alike.
Tuned peers, run only when named in --systems: dbos-wal (DBOS's SQLite in WAL,
synchronous=NORMAL) and prefect-persist (Prefect's results persisted); each is its peer's
runner in the peer's venv with BENCH_MODE set, and its row's label names the tuning.
Peers are never dependencies of the package: the first run creates bench/.venvs/<peer> and
pip-installs the pinned release there (again whenever the pin changes). One table is printed
(Markdown): median wall time, nodes/s, peak RSS and each system's time over Orchestrion's in
the same run (its ``async def`` row where there is one, else its only row); JSON and Markdown
go to --out, and a PNG chart of nodes/s is drawn by
bench/chart.py in a plotting venv of its own (bench/.venvs/plot). A run that takes longer than
--timeout is killed (its whole process group) and reported as a timeout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"
PEERS = BENCH / "peers"
WORKLOADS = ["w0", "w1", "w2", "w3", "w4", "w5", "w6"]
TITLES = {
    "w0": "hello, one node, whole process",
    "w1": "1 -> 1,000 -> 1 fan-out",
    "w2": "200-node chain passing outputs",
    "w3": "200 concurrent 4-node diamonds",
    "w4": "100,000-node DAG, validate + run",
    "w5": "10,000 executions waiting on approval",
    "w6": "scale-out, PostgreSQL + Redis",
}
QUICK_TITLES = {
    "w1": "1 -> 100 -> 1 fan-out",
    "w2": "20-node chain passing outputs",
    "w3": "20 concurrent 4-node diamonds",
    "w4": "1,000-node DAG, validate + run",
    "w5": "200 executions waiting on approval",
}
NO_DAG = "no declared graph to validate: workflows are code"


@dataclass
class System:
    """One column of the comparison: how to get its interpreter and what it can run."""

    name: str
    pins: list[str] = field(default_factory=list)  # empty: runs in Orchestrion's own .venv
    workloads: tuple[str, ...] = ("w0", "w1", "w2", "w3")
    missing: dict[str, str] = field(default_factory=dict)  # workload -> why not
    peer: str = ""  # a tuned variant: the peer whose venv and runner it uses (default: name)
    mode: str = ""  # ... and the runner's BENCH_MODE
    label: str = ""  # the table's name for it (default: name)

    @property
    def venv(self) -> str:
        return self.peer or self.name

    @property
    def python(self) -> Path:
        return Path(sys.executable) if not self.pins else VENVS / self.venv / "bin" / "python"

    @property
    def runner(self) -> Path:
        return PEERS / f"{self.venv}_runner.py"

    @property
    def env(self) -> dict[str, str] | None:
        return {**os.environ, "BENCH_MODE": self.mode} if self.mode else None


DBOS = System(
    "dbos",
    ["dbos==3.4.0"],
    ("w0", "w1", "w2", "w3", "w5"),
    {"w4": NO_DAG},
)
PREFECT = System(
    "prefect",
    ["prefect==3.9.1"],
    ("w0", "w1", "w2", "w3"),
    {
        "w4": NO_DAG,
        "w5": "suspend_flow_run needs a deployment and a worker to resume",
    },
)
FUNCTIONS_ONLY = "one noop node (w0), validation (w4) or approvals (w5): no function to call"
SYSTEMS = {
    "orchestrion-async": System(
        "orchestrion-async",
        workloads=("w1", "w2", "w3"),
        missing={w: FUNCTIONS_ONLY for w in ("w0", "w4", "w5")},
        peer="orchestrion",
        mode="async",
        label="orchestrion, an async def function per node",
    ),
    "orchestrion-def": System(
        "orchestrion-def",
        workloads=("w1", "w2", "w3"),
        missing={w: FUNCTIONS_ONLY for w in ("w0", "w4", "w5")},
        peer="orchestrion",
        mode="sync",
        label="orchestrion, a def function per node (worker thread)",
    ),
    "orchestrion": System(
        "orchestrion",
        workloads=("w0", "w1", "w2", "w3", "w4", "w5", "w6"),
        label="orchestrion, built-in noop handler (engine overhead)",
    ),
    "floor": System(
        "floor",
        missing={
            "w4": "no validation: no engine",
            "w5": "no notion of waiting for a person",
        },
    ),
    "dbos": DBOS,
    "prefect": PREFECT,
    "dagster": System(
        "dagster",
        ["dagster==1.13.29"],
        ("w0", "w1", "w2", "w3", "w4"),
        {"w5": "no wait for a person inside a run"},
    ),
    "airflow": System(
        "airflow",
        ["apache-airflow==3.3.2"],
        ("w0", "w1", "w2", "w3", "w4"),
        {
            "w5": "HITL operators defer to the triggerer: needs scheduler + triggerer",
        },
    ),
}
# Tuned as issue #7 asks, the same pinned release in the same venv: run only when named.
TUNED = {
    "dbos-wal": replace(
        DBOS,
        name="dbos-wal",
        peer="dbos",
        mode="wal",
        label="dbos-wal (tuned: SQLite WAL, synchronous=NORMAL)",
    ),
    "orchestrion-quick": System(
        "orchestrion-quick",
        workloads=("w1", "w2", "w3"),
        missing={w: FUNCTIONS_ONLY for w in ("w0", "w4", "w5")},
        peer="orchestrion",
        mode="quick",
        label="orchestrion, a def function per node registered blocking=False",
    ),
    "orchestrion-inline": System(
        "orchestrion-inline",
        workloads=("w1", "w2", "w3"),
        missing={w: FUNCTIONS_ONLY for w in ("w0", "w4", "w5")},
        peer="orchestrion",
        mode="inline",
        label="orchestrion, an async def function per node registered inline=True",
    ),
    "orchestrion-inline-def": System(
        "orchestrion-inline-def",
        workloads=("w1", "w2", "w3"),
        missing={w: FUNCTIONS_ONLY for w in ("w0", "w4", "w5")},
        peer="orchestrion",
        mode="inline-def",
        label="orchestrion, a def function per node registered inline=True",
    ),
    "prefect-persist": replace(
        PREFECT,
        name="prefect-persist",
        peer="prefect",
        mode="persist",
        label="prefect-persist (tuned: results persisted)",
    ),
}
PLOT_PINS = ["matplotlib==3.11.2"]


def ensure_venv(name: str, pins: list[str]) -> Path:
    """Create bench/.venvs/<name> with these pins unless it already has exactly them."""
    venv = VENVS / name
    stamp = venv / ".bench-pins"
    want = "\n".join(pins)
    python = venv / "bin" / "python"
    if python.exists() and stamp.exists() and stamp.read_text() == want:
        return python
    print(f"[compare] installing {' '.join(pins)} into {venv.relative_to(ROOT)}", file=sys.stderr)
    if not python.exists():
        # The base interpreter, not .venv's: a peer venv must not see Orchestrion's packages.
        base = getattr(sys, "_base_executable", sys.executable)
        subprocess.run([base, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *pins],
        check=True,
    )
    stamp.write_text(want)
    return python


@dataclass
class Outcome:
    """What one fresh-process run gave: a result line, or why there is none."""

    result: dict[str, Any] | None
    outside_s: float
    problem: str | None = None


def run_once(command: list[str], timeout: float, env: dict[str, str] | None = None) -> Outcome:
    """Run in a session of its own, so a timeout can kill its helpers too (Prefect's server)."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=env,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return Outcome(None, time.perf_counter() - started, f"timeout > {timeout:g} s")
        outside = time.perf_counter() - started
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # helpers a runner left behind
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    for line in reversed(stdout.splitlines()):
        if line.startswith("BENCH-RESULT "):
            return Outcome(json.loads(line.removeprefix("BENCH-RESULT ")), outside)
    return Outcome(None, outside, f"failed (exit {proc.returncode}): {_error_line(stderr)}")


def _error_line(stderr: str) -> str:
    """The last exception line of a traceback (not its indented frames), else the last line."""
    lines = [x for x in stderr.splitlines() if x.strip()]
    errors = [x for x in lines if not x[0].isspace() and ("Error" in x or "Exception" in x)]
    line = (errors or lines or ["no output"])[-1].strip()
    return line.split(" (Background on this error")[0][:160]


@dataclass
class Runs:
    """The fresh-process runs of one (system, workload) so far."""

    system: System
    workload: str
    walls: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    results: list[dict[str, Any]] = field(default_factory=list)
    problem: str | None = None


def run_cells(
    systems: list[System], workload: str, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """``--repeat`` rounds of fresh-process runs of each system on ``workload``, every system
    once per round (interleaved); each cell's median and peak."""
    runs = [Runs(system, workload) for system in systems]
    for i in range(args.repeat):
        for cell in runs:
            if cell.problem is None:  # a timeout or failure would only repeat
                _run_one(cell, i, args)
    return [_cell(cell, args) for cell in runs]


def _run_one(runs: Runs, i: int, args: argparse.Namespace) -> None:
    system, workload = runs.system, runs.workload
    command = [str(system.python), str(system.runner), workload]
    if args.quick:
        command.append("--quick")
    outcome = run_once(command, args.timeout, system.env)
    label = f"{system.name} {workload} #{i + 1}"
    if outcome.result is None:
        runs.problem = outcome.problem
        print(f"[compare] {label}: {runs.problem}", file=sys.stderr)
        return
    result = outcome.result
    # w0 is the whole process, start-up included: timed from outside.
    wall = outcome.outside_s if workload == "w0" else result["wall_s"]
    runs.walls.append(wall)
    runs.rss.append(result["peak_rss_mib"])
    runs.results.append(result)
    print(f"[compare] {label}: {wall:.3f} s, {result['peak_rss_mib']} MiB", file=sys.stderr)


def _cell(runs: Runs, args: argparse.Namespace) -> dict[str, Any]:
    system, workload = runs.system, runs.workload
    walls, rss, results, problem = runs.walls, runs.rss, runs.results, runs.problem
    cell: dict[str, Any] = {"system": system.name, "workload": workload, "runs": walls}
    if problem is not None and not walls:
        cell["problem"] = problem
        return cell
    last = results[-1]
    median = statistics.median(walls)
    cell.update(
        median_s=median,
        nodes=last["nodes"],
        nodes_per_s=last["nodes"] / median if median else None,
        peak_rss_mib=max(rss),
        version=last["version"],
        durability=last["durability"],
        extra={k: v for k, v in last.items() if k.endswith(("_s", "_mib")) and k != "wall_s"},
    )
    if "check" in last:  # what the runner read back to show its tuning took (dbos-wal's WAL)
        cell["check"] = last["check"]
    if problem is not None:
        cell["problem"] = f"{len(walls)} of {args.repeat} runs, then {problem}"
    return cell


def run_w6(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Delegate to bench/scaleout.py (real orchestrator and worker processes)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "w6.json"
        command = [sys.executable, str(BENCH / "scaleout.py"), "--workers", "1,2,4"]
        command += ["--json", str(out)]  # one run per worker count: each is 10,100 nodes
        if args.quick:
            command += ["--nodes", "2000", "--chains", "4", "--chain-length", "51"]
        outcome = run_once(command, max(args.timeout, 600.0))
        if outcome.problem is not None and not out.exists():
            return [{"system": "orchestrion", "workload": "w6", "problem": outcome.problem}]
        rows = json.loads(out.read_text())
    cells = []
    for row in rows:
        cells.append(
            {
                "system": "orchestrion",
                "workload": f"w6/{row.get('workers', '?')}w",
                "runs": [row["seconds"]],
                "median_s": row["seconds"],
                "nodes": row["nodes"],
                "nodes_per_s": row["nodes_per_s"],
                "peak_rss_mib": row.get("rss_orchestrator_mib"),
                "version": "scale-out",
                "durability": "PostgreSQL + Redis Streams",
                "extra": {"rss_worker_mib": row.get("rss_worker_mib")},
            }
        )
    return cells


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3f} s" if seconds < 10 else f"{seconds:.1f} s"


def _fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.2g}" if rate < 1 else f"{rate:.1f}"


def _fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}" if ratio < 10 else f"{ratio:,.0f}"


def table(cells: list[dict[str, Any]], quick: bool) -> str:
    """The Markdown table: one row per (workload, system), ratios to Orchestrion's row (its
    ``async def`` row where it ran, its only row elsewhere)."""
    ours = {c["workload"]: c.get("median_s") for c in cells if c["system"] == "orchestrion"}
    ours |= {
        c["workload"]: c["median_s"]
        for c in cells
        if c["system"] == "orchestrion-async" and c.get("median_s")
    }
    lines = [
        "| workload | system | median | nodes/s | peak RSS | time / Orchestrion |",
        "|---|---|---|---|---|---|",
    ]
    for cell in cells:
        key = cell["workload"].split("/")[0]
        title = (QUICK_TITLES if quick else {}).get(key, TITLES.get(key, key))
        label = f"{key}: {title}"
        if "/" in cell["workload"]:  # w6/<n>w: one row per worker count
            label += f", {cell['workload'].split('/')[1].removesuffix('w')} worker(s)"
        spec = SYSTEMS.get(cell["system"]) or TUNED.get(cell["system"])
        system = (spec.label if spec else "") or cell["system"]  # a tuned row names its tuning
        if cell.get("median_s") is None:
            lines.append(f"| {label} | {system} | not run: {cell['problem']} | | | |")
            continue
        base = ours.get(cell["workload"])
        ratio = _fmt_ratio(cell["median_s"] / base) if base else "-"
        rss = f"{cell['peak_rss_mib']:.0f} MiB" if cell.get("peak_rss_mib") else "-"
        note = f" ({cell['problem']})" if cell.get("problem") else ""
        if key == "w6" and cell.get("extra", {}).get("rss_worker_mib"):
            rss += f" (orchestrator; worker {cell['extra']['rss_worker_mib']:.0f})"
        if key == "w5" and "rss_waiting_mib" in cell.get("extra", {}):
            rss += f" (waiting: {cell['extra']['rss_waiting_mib']:.0f})"
        lines.append(
            f"| {label} | {system} | {_fmt_s(cell['median_s'])}{note} "
            f"| {_fmt_rate(cell['nodes_per_s'])} | {rss} | {ratio} |"
        )
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    uname = platform.uname()
    memory = ""
    with contextlib.suppress(OSError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{kib / 1024 / 1024:.0f} GiB"
    return {
        "cpus": os.cpu_count(),
        "memory": memory,
        "machine": uname.machine,
        "kernel": uname.release,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def draw_chart(results: Path, png: Path) -> str | None:
    """Draw nodes/s per system and workload in the plotting venv; None if it cannot."""
    try:
        python = ensure_venv("plot", PLOT_PINS)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"no chart: plotting venv: {exc}"
    outcome = run_once([str(python), str(BENCH / "chart.py"), str(results), str(png)], 120)
    return outcome.problem if outcome.problem and not png.exists() else None


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--systems", default=",".join(SYSTEMS), help=f"also: {','.join(TUNED)} (tuned peers)"
    )
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--repeat", type=int, default=3, help="fresh-process runs per cell")
    parser.add_argument("--quick", action="store_true", help="small sizes (development)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--out", type=Path, default=BENCH / "results", help="JSON, Markdown, PNG")
    parser.add_argument("--chart", type=Path, help="the PNG (default: <out>/compare.png)")
    args = parser.parse_args()
    known = SYSTEMS | TUNED
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    strangers = [s for s in names if s not in known]
    if strangers:
        parser.error(f"unknown systems {strangers}; choose from {','.join(known)}")
    systems = [known[s] for s in names]
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workloads {unknown}; choose from {','.join(WORKLOADS)}")
    if args.repeat < 1:
        parser.error("--repeat: at least 1")

    broken: dict[str, str] = {}
    # Installed from a wheel, Orchestrion's modules come compiled (pip compiles them); an
    # editable checkout under PYTHONDONTWRITEBYTECODE would compile them on every start.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    for system in systems:
        if system.pins:
            try:
                # A tuned peer has its peer's venv and pins: installed once for both.
                ensure_venv(system.venv, system.pins)
            except subprocess.CalledProcessError as exc:
                broken[system.name] = f"install failed (exit {exc.returncode})"
                continue
            # One-time set-up (Airflow's and Prefect's schemas) before any timed run.
            prepare = [str(system.python), str(system.runner), "prepare"]
            outcome = run_once(prepare, 600, system.env)
            if outcome.problem:
                broken[system.name] = f"set-up {outcome.problem}"

    info = machine()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cells: list[dict[str, Any]] = []
    for workload in workloads:
        if workload == "w6":  # Orchestrion's scale-out only: no row of "not run" per peer
            if any(system.name == "orchestrion" for system in systems):
                cells.extend(run_w6(args))
            continue
        problems: dict[str, str] = {}
        for system in systems:
            why = broken.get(system.name) or system.missing.get(workload)
            if why is None and workload not in system.workloads:
                why = "not implemented"
            if why is not None:
                problems[system.name] = why
        ran = iter(run_cells([s for s in systems if s.name not in problems], workload, args))
        for system in systems:  # rows in the order of --systems
            if system.name in problems:
                why = problems[system.name]
                cells.append({"system": system.name, "workload": workload, "problem": why})
            else:
                cells.append(next(ran))
    info["load_average_at_end"] = os.getloadavg()

    versions = {c["system"]: c["version"] for c in cells if c.get("version")} | {
        s.name: s.pins[0].split("==")[1] + " (not run)"
        for s in systems
        if s.pins and not any(c["system"] == s.name and c.get("version") for c in cells)
    }
    # One version for Orchestrion's rows (noop, async def, def): the tree's.
    ours = [c["version"] for c in cells if c["system"].startswith("orchestrion") and "version" in c]
    for name in [k for k in versions if k.startswith("orchestrion")]:
        versions.pop(name)
    versions["orchestrion"] = ours[0] if ours else "?"
    header = (
        f"{started}; {info['cpus']} CPUs, {info['memory']}, {info['machine']}, Python "
        f"{info['python']}; repeat={args.repeat}{', --quick sizes' if args.quick else ''}; "
        f"load average {info['load_average_at_start'][0]:.1f} at start, "
        f"{info['load_average_at_end'][0]:.1f} at end; versions: "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
    )
    text = table(cells, args.quick)
    print(header)
    print()
    print(text)

    args.out.mkdir(parents=True, exist_ok=True)
    results = args.out / "compare.json"
    command = " ".join(["bench/compare.py", *sys.argv[1:]])
    results.write_text(
        json.dumps(
            {"command": command, "started": started, "machine": info, "versions": versions}
            | {"quick": args.quick, "repeat": args.repeat, "cells": cells},
            indent=2,
        )
    )
    (args.out / "compare.md").write_text(header + "\n\n" + text + "\n")
    problem = draw_chart(results, args.chart or args.out / "compare.png")
    print(f"\n[compare] results in {args.out}/compare.{{json,md,png}}", file=sys.stderr)
    if problem:
        print(f"[compare] {problem}", file=sys.stderr)


if __name__ == "__main__":
    main()
