"""WAL checkpoints of the SQLite store, on a thread and a connection of their own.

SQLite's automatic checkpoint runs inside the commit that crosses its threshold (1,000 pages),
on the committing thread: that one commit copies the pages into the database file and waits
for two fsyncs, milliseconds to tens of milliseconds here against tens of microseconds for a
commit, and the event loop stalls with it. The store turns the automatic checkpoint off and
pokes a ``WalCheckpointer`` after its commits instead. A PASSIVE checkpoint never blocks
writers, and SQLite lets go of the GIL while it copies and syncs, so commits go on meanwhile.

A checkpoint that runs beside steady writes may never catch up with the end of the WAL, and
SQLite only starts the WAL over once all of it has been copied: the file would grow without
end. When a checkpoint finds more than ``limit`` frames in the WAL, the next commit runs one
checkpoint on its own connection, as SQLite would have: after the thread's, if one is under
way, and with nothing appended meanwhile, so it completes and the following commit starts the
WAL over.
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
        self._wake = threading.Event()
        self._stopping = False
        self._behind = False
        self._failed = False
        # Two checkpoints at once: one of them would find the WAL busy and do nothing.
        self._running = threading.Lock()
        self._thread = threading.Thread(
            target=self._run, name=f"orchestrion-wal-checkpoint:{path.name}", daemon=True
        )
        self._thread.start()

    def committed(self, conn: sqlite3.Connection) -> None:
        """Count a commit made on ``conn`` (the store's connection, still held)."""
        self._since += 1
        if self._behind or (self._failed and self._since >= self.every):
            # The WAL is not starting over (or there is no thread): checkpoint right here.
            self._behind = False
            self._since = 0
            with self._running:  # after the thread's checkpoint, if one is under way
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
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
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:  # the store's own connection keeps working without us
            logger.warning("WAL checkpoints of %s run inline: %s", self.path, exc)
            self._failed = True
            return
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._stopping:
                    return
                try:
                    with self._running:
                        _busy, frames, _copied = conn.execute(
                            "PRAGMA wal_checkpoint(PASSIVE)"
                        ).fetchone()
                except sqlite3.Error as exc:
                    logger.warning("WAL checkpoint of %s failed: %s", self.path, exc)
                    continue
                self.checkpoints += 1
                # A WAL that starts over stays near ``every`` commits long; this one has not
                # started over for many checkpoints.
                if frames > self.limit:
                    self._behind = True
        finally:
            conn.close()
