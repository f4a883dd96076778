"""``SQLDriver``: what a SQL dialect gives the shared queries (``core.py``, ``journal.py``).

A dialect (``sqlite.py``, ``postgres.py``) subclasses ``SQLStore`` and fills in what is
declared here: its driver (how to hold a connection, how to open a transaction, both wrapped
as a ``Connection`` that runs ``:name`` queries), the SQL fragments where the databases spell
a thing differently, how an id list is matched, and the statements where each has its own
fast form (a commit's inserts, renewing leases, locking the audit head, a purge).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from orchestrion.store.audit import AuditRow, StoredHead
from orchestrion.store.sql.batch import EncodedBatch

__all__ = ["Connection", "Params", "SQLDriver"]

Params = Mapping[str, Any]


class Connection(Protocol):
    """What the shared queries need of a dialect's connection (held by the caller)."""

    async def rows(self, sql: str, params: Params | None = None) -> Sequence[Sequence[Any]]: ...

    async def row(self, sql: str, params: Params | None = None) -> Sequence[Any] | None: ...

    async def run(self, sql: str, params: Params | None = None) -> int:
        """Execute one statement; the number of rows it changed."""


C = TypeVar("C", bound=Connection)


class SQLDriver(Generic[C]):
    """The dialect's part of a SQL store: declared here, defined by each dialect."""

    # Dialect SQL: the insertion order of definitions, newest and oldest first; what makes
    # ids compare bytewise; the NULL-safe equality; what locks rows read before writing them.
    NEWEST_FIRST: ClassVar[str]
    OLDEST_FIRST: ClassVar[str]
    BYTEWISE: ClassVar[str] = ""
    SAME_AS: ClassVar[str]
    LOCK_ROWS: ClassVar[str] = ""
    JOURNAL_ONLY: ClassVar[str] = ""  # a condition leaving out rows that are not events
    # How far ``touched_since`` reads back below its marks: seqs that may commit after a
    # higher one (PostgreSQL assigns them before the commit; SQLite's writers take turns).
    SEQ_LOOKBACK: ClassVar[int] = 0
    NODE_RUNS: ClassVar[str]  # the node runs of execution ``:e``, in insertion order
    FLOOR: ClassVar[str] = "CAST({} AS INTEGER)"  # floor of a non-negative number (truncates)
    # A GROUP BY term that must not choose the index (SQLite would scan the status index to
    # group, instead of the range of the (created_at, status) index; unary + prevents that).
    UNINDEXED: ClassVar[str] = "+{}"

    # ------------------------------------------------------------------ the dialect's part

    async def open(self) -> None:
        """Connect and bring the schema to the current migration."""
        raise NotImplementedError

    async def open_existing(self) -> None:
        """``open``, for a tool acting on a store that must exist already."""
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    def _connection(self) -> AbstractAsyncContextManager[C]:
        """The open connection; driver errors come out as ``StoreError``."""
        raise NotImplementedError

    def _transaction(self) -> AbstractAsyncContextManager[C]:
        """A write transaction, committed when the block ends without an exception."""
        raise NotImplementedError

    def _in_list(self, column: str, values: list[str]) -> tuple[str, dict[str, Any]]:
        """``column`` among ``values``: a condition and its parameters."""
        raise NotImplementedError

    def _chunks(self, values: list[str]) -> Iterator[list[str]]:
        """``values`` in lists that each fit one ``_in_list`` (the database may limit how
        many parameters a statement takes)."""
        raise NotImplementedError

    def _foreign_key_violation(self, exc: BaseException) -> bool:
        raise NotImplementedError

    async def _write_batch(self, tx: C, batch: EncodedBatch) -> None:
        """Insert the journal rows, upsert the node runs, update the executions."""
        raise NotImplementedError

    async def _insert_control(self, tx: C, params: dict[str, Any]) -> int | None:
        """Journal a control request for execution ``:e``; its seq, None when no such one."""
        raise NotImplementedError

    async def _renew(self, tx: C, owner: str, lease_until: float, ids: list[str]) -> set[str]:
        """Extend ``owner``'s leases among ``ids``; the ids it holds."""
        raise NotImplementedError

    async def _locked_audit_head(self, tx: C) -> Sequence[Any] | None:
        """``(seq, hash)`` of the chain's end, locked against other appenders until commit."""
        raise NotImplementedError

    async def _insert_audit(self, tx: C, rows: list[AuditRow], kept: StoredHead) -> None:
        raise NotImplementedError

    async def _delete_finished(self, tx: C, finished_before: float, now: float) -> list[str]:
        """Delete final executions older than the cutoff, with their runs and events."""
        raise NotImplementedError

    # ------------------------------------------------------------------ maintenance

    async def read_rows(self, sql: str, params: Params) -> list[Sequence[Any]]:
        """The rows of one query (tools such as key rotation read the tables directly)."""
        async with self._connection() as conn:
            return list(await conn.rows(sql, params))

    async def write_each(self, statements: list[tuple[str, Params]]) -> int:
        """Run the statements in one transaction; how many rows they changed in all."""
        async with self._transaction() as tx:
            return sum([await tx.run(sql, params) for sql, params in statements])
