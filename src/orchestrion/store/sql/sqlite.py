"""``SQLiteStore``: the embedded store, one SQLite file, on the stdlib ``sqlite3`` driver.

The queries are ``SQLStore``'s (``core.py``); this is the driver and what only SQLite does.
SQLAlchemy and Alembic are only used to migrate (``orchestrion.store.migrate``); every query
is plain SQL on one connection, which is what keeps ``commit`` (the engine's hot path) fast:
params built up front (``batch.py``), node-run upserts coalesced per node, one ``executemany``
per statement with positional parameters, one transaction per batch. Calls run inline in the
event loop: each is short (microseconds to a few milliseconds), shorter than a hop to a thread
would be. They suspend only while another process holds the write lock, waiting for it with
``asyncio.sleep`` instead of SQLite's busy handler (``sqlite_busy.py``). WAL checkpoints run on
a thread of their own (``checkpoint.py``).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from orchestrion.core.states import FINAL_EXECUTION_STATES
from orchestrion.errors import ConfigurationError, StoreError
from orchestrion.store import migrate
from orchestrion.store.audit import AuditRow, StoredHead
from orchestrion.store.checkpoint import WalCheckpointer
from orchestrion.store.sql import batch
from orchestrion.store.sql.batch import EncodedBatch
from orchestrion.store.sql.core import SQLStore
from orchestrion.store.sql.driver import Params
from orchestrion.store.sql.rows import (
    AUDIT_COLS,
    JOURNAL_COLS,
    LOG_COLS,
    RUN_COLS,
    marks,
    positional,
    sql_list,
)
from orchestrion.store.sql.sqlite_busy import BUSY_TIMEOUT, is_busy, retry_busy
from orchestrion.store.sql.sqlite_params import register_adapters

__all__ = ["SQLiteStore", "SQLiteSynchronous", "url_to_sqlite_path"]

T = TypeVar("T")

SQLiteSynchronous = Literal["normal", "full"]
_SYNCHRONOUS: dict[str, str] = {"normal": "NORMAL", "full": "FULL"}  # checked, then in SQL

register_adapters()  # NULLs, flags and record types bound without a search (sqlite_params.py)

# SQLite's historical limit on host parameters is 999: stay well below it in IN lists.
_CHUNK = 500

_INSERT_OUTBOX = positional(
    f"INSERT INTO outbox ({JOURNAL_COLS}) VALUES ({marks(JOURNAL_COLS)})",
    [c.strip() for c in JOURNAL_COLS.split(",")],
)
_INSERT_EVENT = positional(
    f"INSERT INTO events ({JOURNAL_COLS}) VALUES ({marks(JOURNAL_COLS)})",
    [c.strip() for c in JOURNAL_COLS.split(",")],
)
_UPSERT_NODE_RUN = positional(
    f"INSERT INTO node_runs ({RUN_COLS}) VALUES ({marks(RUN_COLS)}) {batch.RUN_CONFLICT},"
    " output = CASE WHEN :has_output THEN excluded.output ELSE node_runs.output END",
    batch.RUN_ROW,
)
_UPDATE_EXECUTION = positional(batch.UPDATE_EXECUTION, batch.UPDATE_ROW)
_INSERT_LOGS = f"INSERT INTO node_logs ({LOG_COLS}) VALUES ({', '.join('?' * 7)})"
_SET_RESULT = positional(batch.SET_RESULT, ("result", "id"))
_INSERT_AUDIT = f"INSERT INTO audit ({AUDIT_COLS}) VALUES ({', '.join('?' * 11)})"
_SET_AUDIT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash, key_id, mac) VALUES (1, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
    " key_id = excluded.key_id, mac = excluded.mac"
)
# Journal seqs are SQLite rowids, which count up from the newest row. A purge that deletes
# the newest rows leaves this mark at the highest seq, so no seq a reader saw comes back; it
# belongs to no execution (""), and a later purge drops it once newer rows exist.
_MARK_EXECUTION = ""
_INSERT_SEQ_MARK = (
    "INSERT INTO events (seq, id, execution_id, node_id, type, attempt, at)"
    f" VALUES (:seq, :id, '{_MARK_EXECUTION}', NULL, 'journal.mark', 0, :at)"
)
_DROP_STALE_MARKS = (
    f"DELETE FROM events WHERE execution_id = '{_MARK_EXECUTION}'"
    " AND seq < (SELECT max(seq) FROM events)"
)
_FINAL = sql_list([s.value for s in FINAL_EXECUTION_STATES])


@functools.lru_cache(maxsize=64)
def _in_names(count: int) -> tuple[tuple[str, ...], str]:
    """The parameter names of an IN list of ``count`` values, and its ``:in0, ...`` text:
    made once per length (a journal read by event types asks for the same one each time)."""
    names = tuple(f"in{i}" for i in range(count))
    return names, marks(", ".join(names))


def url_to_sqlite_path(url: str) -> str:
    """The file path in ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError(f"not a SQLite URL (expected {prefix}<path>): {url}")
    path = url[len(prefix) :].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigurationError("the SQLite store needs a file path; use memory:// instead")
    return path


class SQLiteConnection:
    """The store's one ``sqlite3`` connection as the shared queries use it. An ``await`` of
    it runs through, holding the loop like the plain call, unless a statement outside a
    transaction (a single-statement write, rarely a read) finds the file locked by another
    process: it then waits for the lock without holding the loop (``sqlite_busy.py``)."""

    __slots__ = ("_store", "raw")

    def __init__(self, raw: sqlite3.Connection, store: SQLiteStore) -> None:
        self.raw = raw
        self._store = store

    async def rows(self, sql: str, params: Params | None = None) -> list[Any]:
        try:
            return self.raw.execute(sql, params or {}).fetchall()
        except sqlite3.OperationalError as exc:
            self._may_wait(exc)
        return await self._store._retry(lambda: self.raw.execute(sql, params or {}).fetchall())

    async def row(self, sql: str, params: Params | None = None) -> Sequence[Any] | None:
        try:
            row: Sequence[Any] | None = self.raw.execute(sql, params or {}).fetchone()
            return row
        except sqlite3.OperationalError as exc:
            self._may_wait(exc)
        return await self._store._retry(lambda: self.raw.execute(sql, params or {}).fetchone())

    async def run(self, sql: str, params: Params | None = None) -> int:
        try:
            return self.raw.execute(sql, params or {}).rowcount
        except sqlite3.OperationalError as exc:
            self._may_wait(exc)
        return await self._store._retry(lambda: self.raw.execute(sql, params or {}).rowcount)

    def _may_wait(self, exc: sqlite3.OperationalError) -> None:
        """Raise ``exc`` unless it is the lock taken, met outside a transaction: inside one
        the statement before it may have done work that a retry alone would not redo."""
        if not is_busy(exc) or self.raw.in_transaction:
            raise exc


class _Held:
    """The store's connection held exclusively: ``async with store._connection() as conn``.

    Driver errors in the block come out as ``StoreError``. A class rather than a generator
    context manager for the same reason as ``_Transaction``: every read takes one. It keeps
    no state of its own, so the store makes one and hands it to every ``async with``.
    """

    __slots__ = ("_store",)

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    async def __aenter__(self) -> SQLiteConnection:
        store = self._store
        store._lock.acquire()
        conn = store._conn
        if conn is None:
            store._lock.release()
            raise StoreError("the SQLite store is not open")
        return conn

    async def __aexit__(
        self, _kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        store = self._store  # ``_release``, inline: every read leaves this way
        store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"SQLite store {store.path}: {exc}") from exc

    def _release(self, exc: BaseException | None) -> None:
        store = self._store
        store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"SQLite store {store.path}: {exc}") from exc


class _Transaction(_Held):
    """A write transaction: ``async with store._transaction() as conn``.

    IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading read
    locks, and waits up to busy_timeout for it. Any exception rolls back; driver errors come
    out as ``StoreError``. A class rather than a generator context manager because every
    engine turn opens one (2-3 µs less per transaction in a micro-benchmark).
    """

    __slots__ = ()

    async def __aenter__(self) -> SQLiteConnection:
        conn = await super().__aenter__()
        raw = conn.raw
        try:
            try:
                raw.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if not is_busy(exc):
                    raise
                # Another process writes: wait for it off the loop (reads go on meanwhile).
                await self._store._retry(_begin(raw))
        except BaseException as exc:
            self._release(exc)  # gives the lock back
            raise
        return conn

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        store = self._store
        assert store._conn is not None  # the lock is held: nobody closed it meanwhile
        conn = store._conn.raw
        try:
            if kind is None:
                try:
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                if store._checkpointer is not None:
                    store._checkpointer.committed(conn)
            elif conn.in_transaction:
                conn.execute("ROLLBACK")
        except sqlite3.Error as error:
            raise StoreError(f"SQLite store {store.path}: {error}") from error
        finally:
            self._release(exc)  # gives the lock back; a driver error as such


def _begin(raw: sqlite3.Connection) -> Callable[[], object]:
    return lambda: raw.execute("BEGIN IMMEDIATE")


class SQLiteStore(SQLStore[SQLiteConnection]):
    """A ``Store`` in one SQLite file (WAL mode), migrated to the newest schema on ``open``."""

    NEWEST_FIRST = "rowid DESC"
    OLDEST_FIRST = "rowid"
    SAME_AS = "IS"  # ``IS``, not ``=``: an expected owner of None must match NULL
    JOURNAL_ONLY = f" AND execution_id != '{_MARK_EXECUTION}'"
    NODE_RUNS = f"SELECT {RUN_COLS} FROM node_runs WHERE execution_id = :e ORDER BY rowid"

    def __init__(self, path: str | Path, *, synchronous: SQLiteSynchronous = "normal") -> None:
        if synchronous not in _SYNCHRONOUS:
            raise ConfigurationError(
                f"sqlite_synchronous must be 'normal' or 'full', not {synchronous!r}"
            )
        self.path = Path(path)
        self.synchronous = synchronous
        self._conn: SQLiteConnection | None = None
        self._checkpointer: WalCheckpointer | None = None
        # check_same_thread=False lets other threads (a server, a CLI helper) share the
        # connection; the lock keeps their statements and transactions from interleaving.
        self._lock = threading.Lock()
        self._held = _Held(self)  # stateless: one for every read and every transaction
        self._writing = _Transaction(self)

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        # Turning WAL on needs the file to itself, and SQLite refuses that at once, without
        # its busy handler, while another connection writes (processes opening one new file).
        deadline = time.monotonic() + BUSY_TIMEOUT
        while True:
            try:
                self._configure(conn)
                break
            except sqlite3.Error as exc:
                if is_busy(exc) and time.monotonic() < deadline:
                    await asyncio.sleep(0.01)
                    continue
                conn.close()
                raise StoreError(f"cannot configure SQLite store {self.path}: {exc}") from exc
        self._checkpointer = WalCheckpointer(self.path)
        self._conn = SQLiteConnection(conn, self)

    def _configure(self, conn: sqlite3.Connection) -> None:
        conn.execute("PRAGMA journal_mode = WAL")
        # NORMAL in WAL mode: a commit survives a killed process, not a power loss; FULL
        # also flushes the WAL to the disk at every commit (Settings).
        conn.execute(f"PRAGMA synchronous = {_SYNCHRONOUS[self.synchronous]}")
        conn.execute("PRAGMA foreign_keys = ON")
        # Checkpoints run on a thread of their own (store/checkpoint.py), not in commits.
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        # No busy handler: a locked file is waited for on the event loop (_retry).
        conn.execute("PRAGMA busy_timeout = 0")

    async def open_existing(self) -> None:
        """``open``, refusing to create a new file (for tools that act on a store)."""
        if not self.path.exists():
            raise ConfigurationError(f"no SQLite store at {self.path}")
        await self.open()

    def _migrate(self) -> None:
        """Bring the file to the head schema, importing Alembic only for an older schema."""
        if migrate.current_revision(self.path) == migrate.HEAD_REVISION:
            return
        try:
            if not self.path.exists() or self.path.stat().st_size == 0:
                migrate.create_sqlite_schema(self.path)
            else:
                migrate.upgrade(f"sqlite:///{self.path}")
        except Exception as exc:
            # Another process opening the same new file may have migrated it first.
            if migrate.current_revision(self.path) == migrate.HEAD_REVISION:
                return
            raise StoreError(f"cannot migrate SQLite store {self.path}: {exc}") from exc

    async def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            checkpointer, self._checkpointer = self._checkpointer, None
            if checkpointer is not None:
                checkpointer.close()  # first: the last connection to close ends the WAL
            if conn is not None:
                conn.raw.close()

    async def _retry(self, attempt: Callable[[], T]) -> T:
        """``attempt()`` once the file's lock is free; the store's lock is held throughout,
        except while it waits."""
        return await retry_busy(self._lock, attempt, self._still_open)

    def _still_open(self) -> None:
        if self._conn is None:
            raise StoreError("the SQLite store was closed")

    def _connection(self) -> _Held:
        return self._held

    def _transaction(self) -> _Transaction:
        return self._writing

    # ------------------------------------------------------------------ dialect hooks

    def _in_list(self, column: str, values: list[str]) -> tuple[str, dict[str, Any]]:
        names, placeholders = _in_names(len(values))
        return f"{column} IN ({placeholders})", dict(zip(names, values, strict=True))

    def _chunks(self, values: list[str]) -> Iterator[list[str]]:
        for start in range(0, len(values), _CHUNK):
            yield values[start : start + _CHUNK]

    def _foreign_key_violation(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "FOREIGN KEY" in str(exc)

    async def _write_batch(self, tx: SQLiteConnection, encoded: EncodedBatch) -> None:
        conn = tx.raw
        conn.executemany(_INSERT_EVENT, encoded.events)
        if encoded.outbox:
            conn.executemany(_INSERT_OUTBOX, encoded.events)
        if encoded.runs:
            conn.executemany(_UPSERT_NODE_RUN, encoded.runs)
        if encoded.updates:
            conn.executemany(_UPDATE_EXECUTION, encoded.updates)
        if encoded.results:
            conn.executemany(_SET_RESULT, encoded.results)
        if encoded.logs:
            conn.executemany(_INSERT_LOGS, encoded.logs)

    async def _insert_control(self, tx: SQLiteConnection, params: dict[str, Any]) -> int | None:
        if await tx.row("SELECT owner FROM executions WHERE id = :e", params) is None:
            return None
        cursor = tx.raw.execute(
            "INSERT INTO events (id, execution_id, node_id, type, attempt, at, data)"
            " VALUES (:id, :e, NULL, :type, 0, :at, :data)",
            params,
        )
        return int(cursor.lastrowid or 0)

    async def _renew(
        self, tx: SQLiteConnection, owner: str, lease_until: float, ids: list[str]
    ) -> set[str]:
        held: set[str] = set()
        for chunk in self._chunks(ids):
            cond, params = self._in_list("id", chunk)
            params.update(owner=owner, lease_until=lease_until)
            mine = f"WHERE owner = :owner AND {cond}"
            await tx.run(f"UPDATE executions SET lease_until = :lease_until {mine}", params)
            held.update(
                row[0] for row in await tx.rows(f"SELECT id FROM executions {mine}", params)
            )
        return held

    async def _locked_audit_head(self, tx: SQLiteConnection) -> Sequence[Any] | None:
        # The write transaction holds SQLite's single writer lock: that is the chain's lock.
        return await tx.row("SELECT seq, hash FROM audit_head WHERE id = 1")

    async def _insert_audit(
        self, tx: SQLiteConnection, rows: list[AuditRow], kept: StoredHead
    ) -> None:
        tx.raw.executemany(_INSERT_AUDIT, rows)
        tx.raw.execute(_SET_AUDIT_HEAD, (kept.seq, kept.hash, kept.key_id, kept.mac))

    async def _delete_finished(
        self, tx: SQLiteConnection, finished_before: float, now: float
    ) -> list[str]:
        rows = await tx.rows(
            # A final execution without a finish time (never started) ages from its last
            # update, then its creation.
            f"SELECT id FROM executions WHERE status IN {_FINAL}"
            " AND COALESCE(finished_at, updated_at, created_at) < :cutoff",
            {"cutoff": finished_before},
        )
        ids = [row[0] for row in rows]
        newest = await self._newest_seq(tx)
        for chunk in self._chunks(ids):
            for table, column in (
                ("events", "execution_id"),
                ("node_runs", "execution_id"),
                ("node_logs", "execution_id"),
                ("executions", "id"),
            ):
                cond, params = self._in_list(column, chunk)
                await tx.run(f"DELETE FROM {table} WHERE {cond}", params)
        if newest is not None:
            left = await self._newest_seq(tx)
            if left is None or left < newest:
                await tx.run(_INSERT_SEQ_MARK, {"seq": newest, "id": f"mark-{newest}", "at": now})
            await tx.run(_DROP_STALE_MARKS)
        return ids

    @staticmethod
    async def _newest_seq(tx: SQLiteConnection) -> int | None:
        row = await tx.row("SELECT max(seq) FROM events")
        return None if row is None else row[0]
