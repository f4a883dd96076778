"""The heartbeat of a server process of ``orchestrion serve --workers N``, read by its parent.

A process can be alive and serve nothing: stopped (SIGSTOP, a debugger), or its event loop
blocked by synchronous code that never returns. Its parent sees only deaths, so each server
process writes the time into memory it shares with the parent, from a task of its event loop,
every ``BEAT_SECONDS``; the parent kills and replaces one whose last beat is older than
``Settings.api_worker_timeout`` (``api/workers.py``). The time is ``time.monotonic()``: on
Linux one clock for every process of the machine, unmoved by changes of the wall clock.
"""

from __future__ import annotations

import asyncio
import time
from multiprocessing.context import SpawnContext
from typing import Any

__all__ = ["BEAT_SECONDS", "Heartbeat"]

BEAT_SECONDS = 1.0


class Heartbeat:
    """The last beat of one server process, in memory shared with its parent.

    Made by the parent before it spawns the process (handed over as an argument of the
    process, the one way shared memory reaches a spawned child)."""

    def __init__(self, context: SpawnContext) -> None:
        # One aligned double written by one process and read by another: no lock needed for
        # a value that is only ever replaced whole.
        self._last: Any = context.Value("d", 0.0, lock=False)

    def beat(self) -> None:
        """Now: this process is alive and its event loop turns."""
        self._last.value = time.monotonic()

    def silent_for(self) -> float:
        """Seconds since the last beat (since the start of the clock before the first)."""
        return time.monotonic() - float(self._last.value)

    async def keep_beating(self) -> None:
        """Beat every ``BEAT_SECONDS`` from the running event loop, until cancelled."""
        while True:
            self.beat()
            await asyncio.sleep(BEAT_SECONDS)
