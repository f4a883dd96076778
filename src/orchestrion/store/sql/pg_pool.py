"""``ConnectionPool``: the PostgreSQL store's asyncpg connections, kept open between uses.

asyncpg has a pool of its own, but lending and taking back one of its connections cost more
CPU than a short statement: it runs each release as a task of its own (``asyncio.shield``),
wraps each connection in a proxy whose every method call checks it, and resets a returned
connection with a round trip unless told otherwise. The store needs less: open connections up
to a limit as they are needed, lend an idle one, and never lend one the server closed. A
connection the server ended while idle (a restart, a backend terminated) is known to asyncpg
as soon as the event loop reads the server's goodbye (``is_closed``, no round trip), so it is
dropped and another lent instead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from orchestrion.errors import StoreError

__all__ = ["ConnectionPool"]


class ConnectionPool:
    """Up to ``size`` asyncpg connections opened with ``connect`` (asyncpg's arguments); a
    caller waits at most ``wait`` seconds for one when all are lent."""

    def __init__(self, connect: dict[str, Any], size: int, wait: float) -> None:
        self._connect = connect
        self._size = size
        self._wait = wait
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self._lent: dict[Any, int] = {}  # a lent connection -> the generation it was lent in
        self._generation = 0
        self._closed = False
        self._returned = asyncio.Event()  # set when the last lent connection comes back

    async def acquire(self) -> Any:
        """An open connection outside a transaction, lent until ``release``."""
        if self._closed:
            raise StoreError("the PostgreSQL store is closed")
        if self._slots.locked():
            try:
                async with asyncio.timeout(self._wait):
                    await self._slots.acquire()
            except TimeoutError:
                raise StoreError(
                    f"PostgreSQL store: no connection came free in {self._wait:.0f} s"
                    f" ({self._size} in use)"
                ) from None
        else:
            await self._slots.acquire()  # a free slot: taken without suspending
        try:
            connection = None
            while self._idle:
                candidate = self._idle.pop()
                if not candidate.is_closed():
                    connection = candidate
                    break
            if connection is None:
                connection = await asyncpg.connect(**self._connect)
        except BaseException:
            self._slots.release()
            raise
        self._lent[connection] = self._generation
        self._returned.clear()
        return connection

    async def release(self, connection: Any, reusable: bool) -> None:
        """Take ``connection`` back; ``reusable``: the borrower finished with it normally (a
        statement cancelled half-way leaves it in a state nobody knows)."""
        generation = self._lent.pop(connection, None)
        if not self._lent:
            self._returned.set()
        self._slots.release()
        if connection.is_closed():
            return
        if self._closed:
            await connection.close()
        elif reusable and generation == self._generation and not connection.is_in_transaction():
            self._idle.append(connection)
        else:
            connection.terminate()  # the server rolls back whatever it left open

    def expire(self) -> None:
        """Replace every connection opened so far (a statement found one the server had ended:
        most likely it ended them all): idle ones now, lent ones when they come back."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.terminate()

    async def close(self, wait: float) -> None:
        """Close the idle connections, and the lent ones as they come back within ``wait``
        seconds; any still lent then are cut off."""
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            try:
                await connection.close(timeout=wait)
            except (OSError, asyncpg.InterfaceError, asyncpg.PostgresError):
                connection.terminate()
        if self._lent:
            try:
                await asyncio.wait_for(self._returned.wait(), wait)
            except TimeoutError:
                for connection in list(self._lent):
                    connection.terminate()

    def terminate(self) -> None:
        """Cut every connection off at once."""
        self._closed = True
        for connection in [*self._idle, *self._lent]:
            connection.terminate()
        self._idle = []
