"""WAL checkpoints of the SQLite store run on their own thread, and the WAL stays bounded."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from orchestrion.store.checkpoint import WalCheckpointer

PAGE = 4096


def _writer(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("CREATE TABLE IF NOT EXISTS t (x INTEGER PRIMARY KEY, pad TEXT)")
    return conn


def _wal_pages(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size // PAGE if wal.exists() else 0


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_the_thread_checkpoints_after_every_so_many_commits(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    conn = _writer(path)
    checkpointer = WalCheckpointer(path, every=10)
    try:
        for i in range(9):
            conn.execute("INSERT INTO t VALUES (?, 'x')", (i,))
            checkpointer.committed(conn)
        time.sleep(0.05)
        assert checkpointer.checkpoints == 0
        conn.execute("INSERT INTO t VALUES (9, 'x')")
        checkpointer.committed(conn)
        _wait_for(lambda: checkpointer.checkpoints == 1)
        # Everything was copied: the next write starts the WAL over from its beginning.
        frames, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1:]
        assert frames == copied
    finally:
        checkpointer.close()
        conn.close()


def test_steady_writes_cannot_make_the_wal_grow_without_end(tmp_path: Path) -> None:
    """Checkpoints that never catch up with the end of the WAL hand over to the writer."""
    path = tmp_path / "c.db"
    conn = _writer(path)
    checkpointer = WalCheckpointer(path, every=20, limit=300)
    pad = "p" * 3000  # about a page per row
    try:
        for i in range(4000):
            conn.execute("INSERT INTO t VALUES (?, ?)", (i, pad))
            checkpointer.committed(conn)
        # Unbounded, the WAL would hold every one of the 4,000 or so pages written. How far
        # below that it stays depends on how often the thread gets the GIL: on a loaded
        # machine it was seen at 1,503 pages.
        assert _wal_pages(path) < 2500
    finally:
        checkpointer.close()
        conn.close()
