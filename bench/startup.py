"""Start-up, rung by rung: where the time of W0 (a one-node run, whole process) goes.

    .venv/bin/python bench/startup.py                  # every rung, 15 rounds
    .venv/bin/python bench/startup.py --peer dbos      # and DBOS's W0, for the 10x budget

The last rungs are what users run: the Python API (``Engine("sqlite:///file.db")`` and
``Engine.run`` of a one-node definition, bench/peers/orchestrion_runner.py's w0) and the
command line (``orchestrion run hello.yaml --db <fresh file>``, its output to /dev/null, so
no live progress), each on a database file of its own per run; the ratios of their medians
(command line / Python API, Python API / floor) are printed under the table.

Each rung is a fresh process that does what the rung before it did and one thing more; the
rungs run in turn within each round, so a slow phase of the machine falls on all of them.
The table gives each rung's median wall time, its median CPU time (user and system, of the
process and its children, which a busy machine inflates less than the wall time) and what it
adds to the one before. With ``--peer`` the
peer's own W0 (bench/peers/<peer>_runner.py in bench/.venvs/<peer>, which bench/compare.py
creates) runs in the same rounds, and the table shows the time a run may take to be 10x
faster than it.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PY = sys.executable
ONE_MODEL = (
    "from pydantic import BaseModel\nclass Node(BaseModel):\n    id: str\nNode(id='hello')\n"
)
FLOOR = "SQLite floor: one node, durable"
W0 = "Orchestrion: one node, durable (W0)"
CLI = "`orchestrion run hello.yaml`"
HELLO = "name: hello\ndag:\n  nodes:\n    - id: hello\n      handler: noop\n"
CLI_COMMAND = [str(Path(PY).parent / "orchestrion"), "run", "{tmp}/hello.yaml"]
CLI_COMMAND += ["--db", "{tmp}/hello.db"]
# (rung, command, the rung it is measured against: what it adds to that one)
RUNGS: list[tuple[str, list[str], str | None]] = [
    ("interpreter (`python -c pass`)", [PY, "-c", "pass"], None),
    (
        "import asyncio, sqlite3, json",
        [PY, "-c", "import asyncio, sqlite3, json"],
        "interpreter (`python -c pass`)",
    ),
    (FLOOR, [PY, str(BENCH / "peers" / "floor_runner.py"), "w0"], "import asyncio, sqlite3, json"),
    (
        "... + import pydantic",
        [PY, "-c", "import asyncio, sqlite3, json, pydantic"],
        "import asyncio, sqlite3, json",
    ),
    (
        "... + one model class, one validation",
        [PY, "-c", "import asyncio, sqlite3, json\n" + ONE_MODEL],
        "... + import pydantic",
    ),
    (
        "... + import pydantic_settings",
        [PY, "-c", "import asyncio, sqlite3, json, pydantic_settings\n" + ONE_MODEL],
        "... + one model class, one validation",
    ),
    (
        "import orchestrion.engine.facade",
        [PY, "-c", "import orchestrion.engine.facade"],
        "... + import pydantic_settings",
    ),
    (
        W0,
        [PY, str(BENCH / "peers" / "orchestrion_runner.py"), "w0"],
        "import orchestrion.engine.facade",
    ),
    (CLI, CLI_COMMAND, W0),
]


def _cpu() -> float:
    """CPU seconds (user and system) of every child process waited for so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time(command: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``command``."""
    with tempfile.TemporaryDirectory() as tmp:  # {tmp}: a fresh folder for each run
        (Path(tmp) / "hello.yaml").write_text(HELLO)
        command = [part.replace("{tmp}", tmp) for part in command]
        cpu, started = _cpu(), time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        elapsed, cpu = time.perf_counter() - started, _cpu() - cpu
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed: {done.stderr.decode(errors='replace')}")
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--peer", help="also time this peer's W0 (its venv must exist)")
    args = parser.parse_args()
    rungs = list(RUNGS)
    if args.peer:
        python = BENCH / ".venvs" / args.peer / "bin" / "python"
        if not python.exists():
            raise SystemExit(f"no venv for {args.peer}: run bench/compare.py --systems {args.peer}")
        runner = BENCH / "peers" / f"{args.peer}_runner.py"
        rungs.append((f"{args.peer}: one node (W0)", [str(python), str(runner), "w0"], None))
    # Installed from a wheel, Orchestrion's modules come compiled (pip compiles them); an
    # editable checkout under PYTHONDONTWRITEBYTECODE would compile every edited one per run.
    subprocess.run([PY, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    for _, command, _ in rungs:  # one unmeasured run each: the page cache, not the rung
        _time(command)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name, _, _ in rungs}
    for _ in range(args.rounds):
        for name, command, _ in rungs:
            times[name].append(_time(command))
    median = {name: statistics.median(w for w, _ in runs) * 1000 for name, runs in times.items()}
    cpu = {name: statistics.median(c for _, c in runs) * 1000 for name, runs in times.items()}
    print(
        f"Start-up ladder: median of {args.rounds} rounds, Python {sys.version.split()[0]},"
        f" load average {os.getloadavg()[0]:.1f} at the end\n"
    )
    print("| rung | median | CPU | adds (wall) |")
    print("|---|---:|---:|---|")
    for name, _, base in rungs:
        adds = f"{median[name] - median[base]:+.1f} ms to {base}" if base else ""
        print(f"| {name} | {median[name]:.1f} ms | {cpu[name]:.1f} ms | {adds} |")
    print(
        f"\nCommand line / Python API: {median[CLI] / median[W0]:.2f}x"
        f" (CPU {cpu[CLI] / cpu[W0]:.2f}x);"
        f" Python API / floor: {median[W0] / median[FLOOR]:.2f}x (CPU {cpu[W0] / cpu[FLOOR]:.2f}x)"
    )
    if args.peer:
        peer = rungs[-1][0]
        budget = median[peer] / 10
        print(
            f"\n10x faster than {args.peer}: {budget:.1f} ms, {budget - median[FLOOR]:.1f} ms above"
            f" the floor. Orchestrion's W0 is {median[peer] / median[W0]:.1f}x faster,"
            f" the floor {median[peer] / median[FLOOR]:.1f}x."
        )


if __name__ == "__main__":
    main()
