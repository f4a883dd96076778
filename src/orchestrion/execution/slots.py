"""A count of free places with a wait in arrival order: the local dispatcher's bound.

What ``asyncio.Semaphore`` gives, for a caller that mostly finds a place free: taking one
then is one test and one subtraction, not a coroutine's ``acquire`` and ``release`` (an
attempt that never suspends pays for its slot on every node). When none is free, callers
wait in the order they came; a place freed goes straight to the first of them.
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Slots"]


class Slots:
    """``size`` places; ``take_now`` or ``wait_for_one``, then ``release`` once."""

    __slots__ = ("_waiting", "free")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"need at least one slot, got {size}")
        self.free = size
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take_now(self) -> bool:
        """Take a place if one is free and nobody waits for one (True), else nothing."""
        if self.free > 0 and not self._waiting:
            self.free -= 1
            return True
        return False

    async def wait_for_one(self) -> None:
        """Take a place, after those who came first."""
        if self.take_now():
            return
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # handed a place, cancelled before taking it: pass it on
            elif waiter in self._waiting:  # a release may have dropped it already
                self._waiting.remove(waiter)
            raise

    def release(self) -> None:
        """Give a place back: to the first waiter still waiting, else to the count."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1
