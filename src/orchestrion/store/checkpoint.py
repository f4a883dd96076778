"""WAL checkpoints of the SQLite store, on a thread and a connection of their own.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1,000 pages),
on the committing thread: that one commit copies the pages into the database file and waits
for two fsyncs, milliseconds to tens of milliseconds here against tens of microseconds for a
commit, and the event loop stalls with it. The store turns the automatic checkpoint off and
pokes a ``WalCheckpointer`` after its commits instead. A PASSIVE checkpoint never blocks
writers, and SQLite lets go of the GIL while it copies and syncs, so commits go on meanwhile.

A checkpoint that runs beside steady writes may never catch up with the end of the WAL, and
SQLite only starts the WAL over once all of it has been copied while no one reads it: the file
would grow without end. When a checkpoint finds more than ``limit`` frames in the WAL, the
next one is a RESTART checkpoint, which holds writers off (they wait in their busy handler,
as long as the automatic checkpoint would have made them wait) until it has copied everything
and the next commit can start the WAL over. And a thread that does not get the GIL often
enough (a loop that commits back to back) is stood in for: after ``8 * every`` commits with
no checkpoint done, the committing thread runs one itself, as SQLite would have.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

__all__ = ["WalCheckpointer"]

logger = logging.getLogger(__name__)


class WalCheckpointer:
    """Checkpoints ``path``'s WAL from a daemon thread every ``every`` commits."""

    def __init__(self, path: Path, *, every: int = 128, limit: int = 10_000) -> None:
        self.path = path
        self.every = every
        self.limit = limit
        self.checkpoints = 0  # completed by the thread, for tests and diagnostics
        self._since = 0
        self._unserved = 0  # commits since the thread last finished a checkpoint
        # One checkpoint at a time: a second one would find the WAL busy and do nothing.
        self._running = threading.Lock()
        self._wake = threading.Event()
        self._stopping = False
        self._failed = False
        self._thread = threading.Thread(
            target=self._run, name=f"orchestrion-wal-checkpoint:{path.name}", daemon=True
        )
        self._thread.start()

    def committed(self, conn: sqlite3.Connection) -> None:
        """Count a commit made on ``conn`` (the store's connection, still held)."""
        if self._failed:  # no thread: give the checkpoints back to SQLite
            self._failed = False
            conn.execute("PRAGMA wal_autocheckpoint = 1000")
            return
        self._since += 1
        self._unserved += 1
        if self._unserved > 8 * self.every:  # the thread is starved: stand in for it
            with self._running:
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self._unserved = self._since = 0
        elif self._since >= self.every:
            self._since = 0
            self._wake.set()

    def close(self) -> None:
        """Stop the thread (after the checkpoint under way, if any) and close its connection."""
        self._stopping = True
        self._wake.set()
        self._thread.join()

    def _run(self) -> None:
        try:
            # The timeout is the busy handler a RESTART checkpoint waits on for writers.
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except sqlite3.Error as exc:
            logger.warning("WAL checkpoints of %s go back to SQLite: %s", self.path, exc)
            self._failed = True
            return
        mode = "PASSIVE"
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    with self._running:
                        _busy, frames, _copied = conn.execute(
                            f"PRAGMA wal_checkpoint({mode})"
                        ).fetchone()
                except sqlite3.Error as exc:
                    logger.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                    continue
                self.checkpoints += 1
                self._unserved = 0
                # A WAL that starts over holds about ``every`` commits at a checkpoint; this
                # one has not started over for many of them.
                mode = "RESTART" if frames > self.limit else "PASSIVE"
        finally:
            conn.close()
