"""Waiting for SQLite's lock without stopping the event loop.

SQLite lets one writer in at a time, across every process on the file. Its own busy handler
(``busy_timeout``) waits for the lock by sleeping in the calling thread: the event loop, which
then serves nothing, not even the reads that WAL would let through meanwhile. With several
server processes on one file (``orchestrion serve --workers N``) one process's wait for another's
commit stalled every request it held. The store's connection has no busy handler (timeout 0):
a statement that finds the lock taken fails at once with ``SQLITE_BUSY``, before it did
anything, and is tried again here after an ``asyncio.sleep``, with the store's thread lock
given back meanwhile, for as long as the busy handler would have waited. A write transaction
starts with ``BEGIN IMMEDIATE``, so this is where it waits; once it holds the lock nothing in
it waits again (in WAL mode a writer holding the lock is never refused).
"""

from __future__ import annotations

import asyncio
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["BUSY_TIMEOUT", "is_busy", "retry_busy"]

T = TypeVar("T")

BUSY_TIMEOUT = 5.0
"""Seconds a statement waits for the lock before the store reports it locked."""

# The first pause, the longest, in seconds. Another process holds the lock for a commit's
# tens to hundreds of microseconds; SQLite's own handler sleeps 1, 2, 5, 10 ms and more,
# which at the upper end leaves the lock free most of the time it sleeps.
_FIRST = 0.0005
_LONGEST = 0.004

_SQLITE_BUSY = 5


def is_busy(exc: BaseException) -> bool:
    """Whether ``exc`` is SQLite refusing a lock another connection holds."""
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode & 0xFF == _SQLITE_BUSY


async def retry_busy(
    lock: threading.Lock, attempt: Callable[[], T], still_open: Callable[[], None]
) -> T:
    """``attempt()`` again until the lock is free, ``lock`` (held on entry and on return,
    whatever happens) given back while it sleeps; the last ``SQLITE_BUSY`` after
    ``BUSY_TIMEOUT`` seconds. ``still_open`` raises when the store was closed meanwhile."""
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = _FIRST
    while True:
        lock.release()
        try:
            # Jitter: two processes that found the lock taken at once do not retry in step.
            await asyncio.sleep(pause * (0.5 + random.random()))
        finally:
            lock.acquire()
        still_open()
        try:
            return attempt()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() > deadline:
                raise
        pause = min(pause * 2, _LONGEST)
