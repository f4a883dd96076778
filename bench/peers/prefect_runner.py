"""Prefect's side: flows and tasks against Prefect's own local server on a fresh SQLite file.

    bench/.venvs/prefect/bin/python bench/peers/prefect_runner.py w1 [--quick]
    BENCH_MODE=persist bench/.venvs/prefect/bin/python bench/peers/prefect_runner.py w1

Durable default: no ``PREFECT_API_URL``, so the first flow call starts Prefect's temporary
local server (a subprocess) on ``$PREFECT_HOME/prefect.db`` (SQLite), and every flow and task
run state is recorded there through its API. Result persistence is left at Prefect's default
(``PREFECT_RESULTS_PERSIST_BY_DEFAULT``, reported in the JSON line). Timed workloads run after
one warm-up flow, so the server's start is in w0 but not in w1..w3. The schema is created
once per venv and copied into each fresh ``PREFECT_HOME`` (as Airflow's is).
``BENCH_MODE=persist`` (issue #7's tuned row) turns persistence on, results in
``$PREFECT_HOME/results`` (a temp dir): outputs stored, as Orchestrion stores them; ``check``
counts the files written. Prefect keys a stored output by its cache key (inputs, task source,
flow run), so calls alike in one flow run share one file and all but the first are cache hits:
w2's chain passes 0 along, so its 200 tasks write one file. A key per task run (a file per
task) took as long here (2.19 s, 2.16 s).
Idiomatic shapes: a fan-out is ``task.map`` (default thread-pool task runner); a chain is a
flow calling tasks in order, each fed the last output; concurrent executions are async flows
gathered on one event loop. Flows are code, not a declared graph, so there is no w4; waiting
for a person (``suspend_flow_run``) needs a deployment and a worker to resume, so no w5.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _common

# Before prefect is imported: its settings are read once, at import.
_TEMPLATE = Path(sys.prefix) / "bench-prefect-home"
_HOME = tempfile.mkdtemp(prefix="bench-prefect-home-")
os.environ["PREFECT_HOME"] = _HOME
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# No network here but the package registries: the server's telemetry would only fail.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
# Its default of 20 s is too short for the first start on a busy 2-core machine.
os.environ["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "90"
os.environ.pop("PREFECT_API_URL", None)
_RESULTS = Path(_HOME) / "results"
if _common.MODE == "persist":
    os.environ["PREFECT_RESULTS_PERSIST_BY_DEFAULT"] = "true"
    os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"] = str(_RESULTS)


def _prepare_home() -> None:
    """Create the schema once per venv (``prefect server database upgrade``), then copy it.

    Creating it takes the temporary server some 10-20 s here; a user pays that once, so it
    is in no figure (as with Airflow's ``airflow db migrate``).
    """
    if not (_TEMPLATE / "prefect.db").exists():
        partial = _TEMPLATE.with_name(_TEMPLATE.name + ".partial")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir(parents=True)
        subprocess.run(
            [str(Path(sys.prefix) / "bin" / "prefect"), "server", "database", "upgrade", "-y"],
            env={**os.environ, "PREFECT_HOME": str(partial)},
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        partial.rename(_TEMPLATE)
    # The WAL holds part of what the upgrade wrote: copy it along with the file.
    for name in ("prefect.db", "prefect.db-wal"):
        if (_TEMPLATE / name).exists():
            shutil.copy(_TEMPLATE / name, Path(_HOME) / name)


_prepare_home()

import asyncio  # noqa: E402

from prefect import flow, task  # noqa: E402


def _version() -> str:
    from importlib.metadata import version

    return version("prefect")


def _durability() -> str:
    from prefect.settings import get_current_settings

    results = get_current_settings().results
    text = "temporary local server, SQLite in PREFECT_HOME; "
    if _common.MODE == "persist":  # as Prefect read the settings, not as they were meant
        where = "a temp dir" if results.local_storage_path == _RESULTS else "elsewhere"
        persist = results.persist_by_default
        return text + f"tuned: results persisted (persist_by_default={persist}), files in {where}"
    return text + f"results persist_by_default={results.persist_by_default}"


@task
def noop(value: Any = None) -> Any:
    return value


@task
async def noop_async(value: Any = None) -> Any:
    return value


@flow
def hello() -> Any:
    return noop("hello")


@flow
def fan_out(width: int) -> int:
    noop("root")
    results = noop.map(range(width)).result()
    noop("sink")
    return len(results)


@flow
def chain(length: int) -> Any:
    value: Any = 0
    for _ in range(length):
        value = noop(value)
    return value


@flow
async def diamond() -> Any:
    a = await noop_async("a")
    b, c = await asyncio.gather(noop_async(a), noop_async(a))
    return await noop_async([b, c])


def _checked(out: dict[str, Any]) -> dict[str, Any]:
    """Tuned, the result files written (outside the timed part); it must have written some."""
    if _common.MODE != "persist":
        return out
    files = sum(1 for p in _RESULTS.rglob("*") if p.is_file()) if _RESULTS.exists() else 0
    if not files:
        raise RuntimeError(f"no result persisted in {_RESULTS}")
    return {**out, "check": f"{files} result files in the results dir after the run"}


def _timed(run: Any) -> dict[str, Any]:
    hello()  # warm-up: starts the temporary server outside the timed part
    started = time.perf_counter()
    run()
    return _checked({"wall_s": time.perf_counter() - started})


def w0(_tmp: Path, _size: int) -> dict[str, Any]:
    assert hello() == "hello"
    return _checked({})


def w1(_tmp: Path, size: int) -> dict[str, Any]:
    return _timed(lambda: fan_out(size))


def w2(_tmp: Path, size: int) -> dict[str, Any]:
    return _timed(lambda: chain(size))


def w3(_tmp: Path, size: int) -> dict[str, Any]:
    async def many() -> None:
        await asyncio.gather(*(diamond() for _ in range(size)))

    return _timed(lambda: asyncio.run(many()))


if __name__ == "__main__":
    try:
        _common.main(
            "prefect",
            _version,
            {"w0": w0, "w1": w1, "w2": w2, "w3": w3},
            _durability(),
            modes=("persist",),
        )
    finally:
        shutil.rmtree(_HOME, ignore_errors=True)
