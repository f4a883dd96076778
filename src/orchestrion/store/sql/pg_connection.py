"""The PostgreSQL store's statements on asyncpg directly: ``:name`` parameters, held
connections, driver errors (the pool is ``pg_pool.py``).

The shared queries (``core.py``, ``journal.py``) name their parameters (``:id``); asyncpg
numbers them (``$1``). Each statement text is translated once (cached) into asyncpg's form and
the order of its names, and asyncpg prepares it once per connection (its statement cache is
keyed by that text). SQLAlchemy stays for the schema and the migrations only: on every
statement its asyncio layer (a greenlet switch per call, its result, pool and transaction
machinery) cost more CPU than asyncpg's own work for it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Final

import asyncpg

from orchestrion.errors import StoreError
from orchestrion.store.sql.driver import Params
from orchestrion.store.sql.pg_pool import ConnectionPool

__all__ = ["DRIVER_ERRORS", "PostgresConnection", "held", "numbered", "reason"]

# What asyncpg raises: the server's errors (with a SQLSTATE), the client's (a closed
# connection, a value it cannot encode), its protocol errors, and the network's (OSError,
# timeouts included).
DRIVER_ERRORS: Final = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    OSError,
)
# As SQLAlchemy's text() finds parameters: a ``::`` cast or ``a:b`` inside a word is none.
_NAME: Final = re.compile(r"(?<![:\w\x5c]):(\w+)(?![:\w])")


@lru_cache(maxsize=2048)
def numbered(sql: str) -> tuple[str, tuple[str, ...]]:
    """``sql`` with ``$n`` for each ``:name`` (one number per distinct name), and the names in
    the order of their numbers."""
    names: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        return f"${names.setdefault(match.group(1), len(names) + 1)}"

    return _NAME.sub(number, sql), tuple(names)


def _args(names: tuple[str, ...], params: Params | None) -> list[Any]:
    if not names:
        return []
    if params is None:
        raise StoreError(f"PostgreSQL store: no value for parameter {names[0]!r}")
    try:
        return [params[name] for name in names]
    except KeyError as exc:
        raise StoreError(f"PostgreSQL store: no value for parameter {exc}") from None


class PostgresConnection:
    """A pooled connection (in a transaction or not), as the shared queries use it."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw  # an asyncpg connection (the pool's proxy of one)

    async def rows(self, sql: str, params: Params | None = None) -> Sequence[Any]:
        text, names = numbered(sql)
        rows: Sequence[Any] = await self.raw.fetch(text, *_args(names, params))
        return rows

    async def row(self, sql: str, params: Params | None = None) -> Sequence[Any] | None:
        text, names = numbered(sql)
        row: Sequence[Any] | None = await self.raw.fetchrow(text, *_args(names, params))
        return row

    async def run(self, sql: str, params: Params | None = None) -> int:
        text, names = numbered(sql)
        status: str = await self.raw.execute(text, *_args(names, params))
        # The command tag ends with the number of rows ("UPDATE 3", "INSERT 0 1").
        count = status.rpartition(" ")[2]
        return int(count) if count.isdigit() else -1

    async def run_each(self, sql: str, params: Sequence[Mapping[str, Any]]) -> None:
        """One statement once for each parameter set (asyncpg pipelines them)."""
        text, names = numbered(sql)
        await self.raw.executemany(text, [_args(names, each) for each in params])


@asynccontextmanager
async def held(pool: ConnectionPool, transaction: bool) -> AsyncIterator[PostgresConnection]:
    """A connection of ``pool``, in a transaction committed on success when ``transaction``
    (else each statement commits on its own); driver errors come out as ``StoreError``.

    A statement that met a connection dead in a way nobody saw yet (the server ended it while
    the statement was on its way) leaves it closed: every connection of the pool opened
    before it is then replaced, as the server most likely ended them all.
    """
    try:
        raw = await pool.acquire()
        reusable = True
        try:
            if transaction:
                async with raw.transaction():
                    yield PostgresConnection(raw)
            else:
                yield PostgresConnection(raw)
        except BaseException as exc:
            # An error leaves the connection usable (a failed transaction was rolled back);
            # a cancellation may have cut a statement off half-way.
            reusable = isinstance(exc, Exception)
            if isinstance(exc, DRIVER_ERRORS) and raw.is_closed():
                pool.expire()
            raise
        finally:
            await pool.release(raw, reusable)
    except DRIVER_ERRORS as exc:
        raise StoreError(f"PostgreSQL store: {reason(exc)}") from exc


def reason(exc: BaseException) -> str:
    """What the server or the network said, without SQLAlchemy's wrapping (the driver class
    in parentheses, the statement, the link to its docs) where there is one."""
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip() or type(exc).__name__
