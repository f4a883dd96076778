"""DBOS's side: durable workflows and steps, SQLite system database with DBOS's own settings.

    bench/.venvs/dbos/bin/python bench/peers/dbos_runner.py w1 [--quick]
    BENCH_MODE=wal bench/.venvs/dbos/bin/python bench/peers/dbos_runner.py w1   # dbos-wal

Durable default: ``system_database_url=sqlite:///<tmp>/dbos.sqlite``, nothing tuned (DBOS
leaves SQLite in its rollback-journal default). ``BENCH_MODE=wal`` (issue #7's tuned row) adds
``journal_mode=WAL`` and ``synchronous=NORMAL``, as Orchestrion runs: DBOS 3.4 has no setting
for either, so a SQLAlchemy ``connect`` listener sets them on every connection after DBOS's
own (``IMMEDIATE`` transactions, busy timeout, foreign keys), which stay as they are. Every run
reads ``PRAGMA journal_mode`` back from the file once DBOS is destroyed (``check``) and, tuned,
fails unless it is ``wal``.
Idiomatic shapes: a fan-out starts one child workflow per node (``DBOS.start_workflow``) and
collects the handles; a chain is one workflow calling steps in order, each fed the last
output; concurrent executions are workflows started from outside. DBOS workflows are code,
not a declared graph, so there is nothing to validate: no w4.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import _common
import sqlalchemy as sa
from dbos import DBOS, DBOSConfig

# Connections the WAL listener tuned, and what SQLite answered (synchronous: 1 is NORMAL).
_tuned: list[tuple[str, int]] = []


def _tune(dbapi_conn: Any, _record: Any) -> None:
    """WAL and synchronous=NORMAL on a new SQLite connection (DBOS has no setting for them)."""
    mode = dbapi_conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    dbapi_conn.execute("PRAGMA synchronous=NORMAL")
    _tuned.append((mode, dbapi_conn.execute("PRAGMA synchronous").fetchone()[0]))


if _common.MODE == "wal":
    # On the Engine class: DBOS creates its engine itself and offers no hook for one.
    sa.event.listen(sa.Engine, "connect", _tune)


def _version() -> str:
    from importlib.metadata import version

    return version("dbos")


def _launch(tmp: Path) -> None:
    logging.getLogger("dbos").setLevel(logging.WARNING)  # one log line per workflow otherwise
    config: DBOSConfig = {
        "name": "bench",
        "system_database_url": f"sqlite:///{tmp / 'dbos.sqlite'}",
        "log_level": "WARNING",
    }
    DBOS(config=config)


@DBOS.step()
def noop(value: Any = None) -> Any:
    return value


@DBOS.workflow()
def hello() -> Any:
    return noop("hello")


@DBOS.workflow()
def leaf(i: int) -> Any:
    return noop(i)


@DBOS.workflow()
def fan_out(width: int) -> int:
    noop("root")
    handles = [DBOS.start_workflow(leaf, i) for i in range(width)]
    results = [h.get_result() for h in handles]
    noop("sink")
    return len(results)


@DBOS.workflow()
def chain(length: int) -> Any:
    value: Any = 0
    for _ in range(length):
        value = noop(value)
    return value


@DBOS.workflow()
def diamond() -> Any:
    a = noop("a")
    b, c = noop(a), noop(a)  # a workflow's steps run one after another
    return noop([b, c])


_parked = 0
_parked_lock = threading.Lock()


@DBOS.step()
async def prepare() -> None:
    global _parked
    with _parked_lock:
        _parked += 1


@DBOS.workflow()
async def approve() -> Any:
    await prepare()
    decision = await DBOS.recv_async("approval", timeout_seconds=3600)
    return await noop_async(decision)


@DBOS.step()
async def noop_async(value: Any) -> Any:
    return value


def _timed(run: Any) -> dict[str, Any]:
    started = time.perf_counter()
    run()
    return {"wall_s": time.perf_counter() - started}


def _destroy(tmp: Path, out: dict[str, Any]) -> dict[str, Any]:
    """Destroy DBOS, then read the journal mode from its file (tuned: it must be WAL)."""
    DBOS.destroy()
    with contextlib.closing(sqlite3.connect(tmp / "dbos.sqlite")) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]
    check = f"journal_mode={mode} read from the file after the run"
    if _common.MODE == "wal":
        synchronous = sorted({s for _, s in _tuned})
        check += f"; {len(_tuned)} connections tuned, synchronous={synchronous} (1: NORMAL)"
        if mode != "wal" or not _tuned or synchronous != [1]:
            raise RuntimeError(f"WAL tuning did not take: {check}")
    return {**out, "check": check}


def w0(tmp: Path, _size: int) -> dict[str, Any]:
    _launch(tmp)
    DBOS.launch()
    assert hello() == "hello"
    return _destroy(tmp, {})


def w1(tmp: Path, size: int) -> dict[str, Any]:
    _launch(tmp)
    DBOS.launch()
    return _destroy(tmp, _timed(lambda: fan_out(size)))


def w2(tmp: Path, size: int) -> dict[str, Any]:
    _launch(tmp)
    DBOS.launch()
    return _destroy(tmp, _timed(lambda: chain(size)))


def w3(tmp: Path, size: int) -> dict[str, Any]:
    _launch(tmp)
    DBOS.launch()

    def run() -> None:
        handles = [DBOS.start_workflow(diamond) for _ in range(size)]
        for handle in handles:
            handle.get_result()

    return _destroy(tmp, _timed(run))


def w5(tmp: Path, size: int) -> dict[str, Any]:
    """``size`` async workflows parked in ``DBOS.recv_async``, then each sent its message."""
    _launch(tmp)
    DBOS.launch()

    async def go() -> dict[str, Any]:
        started = time.perf_counter()
        handles = [await DBOS.start_workflow_async(approve) for _ in range(size)]
        while _parked < size:  # every workflow past its first step and into recv
            await asyncio.sleep(0.01)
        parked = time.perf_counter() - started
        rss = _common.peak_rss_mib()
        started = time.perf_counter()
        for handle in handles:
            await DBOS.send_async(handle.workflow_id, True, "approval")
        for handle in handles:
            assert await handle.get_result() is True
        decide = time.perf_counter() - started
        return {"wall_s": parked, "rss_waiting_mib": round(rss, 1), "decide_s": round(decide, 4)}

    return _destroy(tmp, asyncio.run(go()))


if __name__ == "__main__":
    _common.main(
        "dbos",
        _version,
        {"w0": w0, "w1": w1, "w2": w2, "w3": w3, "w5": w5},
        "SQLite system database, tuned: journal_mode=WAL, synchronous=NORMAL (connect listener)"
        if _common.MODE == "wal"
        else "SQLite system database, DBOS defaults (rollback journal)",
        modes=("wal",),
    )
