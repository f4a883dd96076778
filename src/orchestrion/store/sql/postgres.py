"""``PostgresStore``: the scale-out store, on PostgreSQL through asyncpg.

The queries are ``SQLStore``'s (``core.py``); this is the driver and what only PostgreSQL does.
Users give ``postgresql://`` (or ``postgres://``) URLs. The statements run on asyncpg directly
(``pg_connection.py``, ``pg_pool.py``); SQLAlchemy and Alembic hold the schema and migrate
it: ``open`` reads the schema's revision, and when it is not the newest migrates under an
advisory lock, so engine processes starting together migrate once. ``commit`` is one
transaction whose many-row statements each take one array parameter per column
(``unnest``): a turn costs one round trip per statement, whatever its size.
``claim_execution`` is one conditional UPDATE, atomic across processes by row locks.

Insertion order, which SQLite reads from ``rowid``, is taken from what PostgreSQL has: node
runs follow the first journal event of each node, and definitions created in the same second
follow their inserting transaction (``age(xmin)``; each definition is inserted on its own).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Final

from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from orchestrion.core.states import FINAL_EXECUTION_STATES
from orchestrion.errors import ConfigurationError, ExecutionNotFound, StoreError
from orchestrion.store import migrate
from orchestrion.store.audit import AuditRow, StoredHead
from orchestrion.store.base import ExecutionSnapshot
from orchestrion.store.sql.batch import (
    RUN_CONFLICT,
    RUN_ROW,
    SET_RESULT,
    UPDATE_EXECUTION,
    UPDATE_ROW,
    EncodedBatch,
)
from orchestrion.store.sql.core import SQLStore
from orchestrion.store.sql.pg_connection import DRIVER_ERRORS, PostgresConnection, held, reason
from orchestrion.store.sql.pg_pool import ConnectionPool
from orchestrion.store.sql.rows import (
    AUDIT_COLS,
    EVENT_COLS,
    EXEC_COLS,
    JOURNAL_COLS,
    LOG_COLS,
    RUN_COLS,
    event_of,
    execution_of,
    node_run_of,
)
from orchestrion.store.url_display import redacted_url

__all__ = ["PostgresStore", "asyncpg_url"]

_SCHEMES: Final = ("postgresql", "postgres", "postgresql+asyncpg")
# pg_advisory_xact_lock key held while migrating: b"orchestr" as a big-endian int64.
_MIGRATION_LOCK: Final = 0x6F72636865737472
_FOREIGN_KEY_VIOLATION: Final = "23503"
# Taken only while the audit head row does not exist yet (the first append): b"audit\0\0\0".
_AUDIT_LOCK: Final = 0x6175646974000000
_CLOSE_WAIT: Final = 10.0  # seconds ``close`` waits for connections in use to come back
_POOL_SIZE: Final = 20  # connections at most, per store (SQLAlchemy's two pools had 15 each)
_POOL_WAIT: Final = 30.0  # seconds to wait for a free connection before failing, as before


def _unnest(columns: Sequence[tuple[str, str]]) -> str:
    """``unnest`` of one typed array parameter per column."""
    return "unnest(" + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in columns) + ")"


# Many rows in one statement: each column is one array parameter (``unnest``), so a turn of
# N records costs one round trip and one parse instead of N bound executions. Journal rows
# keep the batch's order (``WITH ORDINALITY``): ``seq`` is the order of the journal.
_EVENT_TYPES = tuple(
    zip(
        [c.strip() for c in JOURNAL_COLS.split(",")],
        ("text", "text", "text", "text", "int", "float8", "text", "text", "text"),
        strict=True,
    )
)
_INSERT_EVENTS = (
    f"INSERT INTO events ({JOURNAL_COLS}) SELECT {JOURNAL_COLS} FROM {_unnest(_EVENT_TYPES)}"
    f" WITH ORDINALITY AS u({JOURNAL_COLS}, ord) ORDER BY ord"
)
_INSERT_OUTBOX = (
    f"INSERT INTO outbox ({JOURNAL_COLS}) SELECT {JOURNAL_COLS} FROM {_unnest(_EVENT_TYPES)}"
    f" WITH ORDINALITY AS u({JOURNAL_COLS}, ord) ORDER BY ord"
)
_RUN_TYPES = tuple(
    zip(
        RUN_ROW[:-1],
        [
            "text",
            "text",
            "text",
            "int",
            "float8",
            "float8",
            "text",
            "text",
            "text",
            "float8",
            "text",
            "float8",
        ],
        strict=True,
    )
)
_UPSERT_RUNS_SQL = f"INSERT INTO node_runs ({RUN_COLS}) SELECT * FROM {_unnest(_RUN_TYPES)}"
# Two statements keep the output rule: without an output in this snapshot the stored one stays.
_UPSERT_RUNS = f"{_UPSERT_RUNS_SQL} {RUN_CONFLICT}"
_UPSERT_RUNS_WITH_OUTPUT = f"{_UPSERT_RUNS_SQL} {RUN_CONFLICT}, output = excluded.output"
_LOG_TYPES = tuple(
    zip(
        [c.strip() for c in LOG_COLS.split(",")],
        ("text", "text", "int", "float8", "text", "text", "text"),
        strict=True,
    )
)
_INSERT_LOGS = (
    f"INSERT INTO node_logs ({LOG_COLS}) SELECT {LOG_COLS} FROM {_unnest(_LOG_TYPES)}"
    f" WITH ORDINALITY AS u({LOG_COLS}, ord) ORDER BY ord"
)
_AUDIT_TYPES = tuple(
    zip(
        [c.strip() for c in AUDIT_COLS.split(",")],
        ("int8", "float8", "text", "text", "text", "text", "text", "text", "text", "text", "text"),
        strict=True,
    )
)
# The records and the new head in one statement (one round trip).
_INSERT_AUDIT = (
    f"WITH added AS (INSERT INTO audit ({AUDIT_COLS}) SELECT {AUDIT_COLS} FROM"
    f" {_unnest(_AUDIT_TYPES)} WITH ORDINALITY AS u({AUDIT_COLS}, ord) ORDER BY ord RETURNING 1)"
    " INSERT INTO audit_head (id, seq, hash, key_id, mac)"
    " VALUES (1, :head_seq, :head_hash, :head_key_id, :head_mac)"
    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
    " key_id = excluded.key_id, mac = excluded.mac"
)
# The row lock on the head serialises appenders of every process until their commit.
_LOCK_AUDIT_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE"


_RUN_FIELDS = ", ".join(f"r.{c.strip()}" for c in RUN_COLS.split(","))
# The node runs of execution ``:e`` in insertion order: that of each node's first journal event.
_RUNS_IN_ORDER = (
    " FROM node_runs r LEFT JOIN ("
    " SELECT node_id, min(seq) AS first_seq FROM events"
    " WHERE execution_id = :e AND node_id IS NOT NULL GROUP BY node_id"
    ") f ON f.node_id = r.node_id"
    ' WHERE r.execution_id = :e ORDER BY f.first_seq NULLS LAST, r.node_id COLLATE "C"'
)
# An execution, its node runs and its events of the types ``:types``, in one statement: one
# round trip instead of three, and one snapshot of the three. Each row comes back as an
# anonymous record, which asyncpg decodes to a tuple of the columns as they are.
_SNAPSHOT = (
    f"SELECT (SELECT ROW({EXEC_COLS}) FROM executions WHERE id = :e),"
    f" ARRAY(SELECT ROW({_RUN_FIELDS}){_RUNS_IN_ORDER}),"
    f" ARRAY(SELECT ROW({EVENT_COLS}) FROM events"
    " WHERE execution_id = :e AND type = ANY(:types) ORDER BY seq)"
)


def _columns(rows: list[tuple[Any, ...]], names: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Rows as one list per column, the parameters of an ``unnest``."""
    return {name: [row[i] for row in rows] for i, (name, _) in enumerate(names)}


def asyncpg_url(url: str) -> str:
    """``url`` (``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://``) for asyncpg."""
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError) as exc:
        reason = "its port is not a number" if isinstance(exc, ValueError) else "it does not parse"
        raise ConfigurationError(
            f"invalid PostgreSQL URL {redacted_url(url)!r}: {reason}"
        ) from None
    if parsed.port is not None and not 0 < parsed.port <= 65535:
        raise ConfigurationError(
            f"invalid PostgreSQL URL {redacted_url(url)!r}: port {parsed.port} is not 1 to 65535"
        )
    if parsed.drivername.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"not a PostgreSQL URL (expected postgresql://user@host/db): {parsed.drivername}://"
        )
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _alembic_upgrade(conn: Connection) -> None:
    """Run the migrations on ``conn`` (inside the caller's transaction)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


class PostgresStore(SQLStore[PostgresConnection]):
    """A ``Store`` in one PostgreSQL database, migrated to the newest schema on ``open``."""

    NEWEST_FIRST = "age(xmin)"
    OLDEST_FIRST = "age(xmin) DESC"
    # Ids compare bytewise, as in SQLite, whatever the database's collation.
    BYTEWISE = ' COLLATE "C"'
    FLOOR = "CAST(FLOOR({}) AS BIGINT)"  # a cast alone would round
    UNINDEXED = "{}"  # its planner weighs the range itself (and + is no text operator)
    SAME_AS = "IS NOT DISTINCT FROM"  # an expected owner of None matches NULL
    # A takeover (an UPDATE of owner) waits for the commit that read the row, or the commit
    # sees it and refuses the batch.
    LOCK_ROWS = " FOR UPDATE"
    SEQ_LOOKBACK = 256  # transactions under way when the marks were read commit later
    # Insertion order = the order of each node's first journal event.
    NODE_RUNS = f"SELECT {_RUN_FIELDS}{_RUNS_IN_ORDER}"

    def __init__(self, url: str) -> None:
        self.url = asyncpg_url(url)
        # One pool serves both: an asyncpg connection outside a transaction block commits
        # each statement on its own (reads and single-statement writes need no BEGIN).
        self._pool: ConnectionPool | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({self._where()})"

    def _where(self) -> str:
        """The URL as users wrote it, without the driver and with the password hidden."""
        return make_url(self.url).set(drivername="postgresql").render_as_string()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._pool is not None:
            return
        where = self._where()
        pool = None
        try:
            # The URL's parts and options as SQLAlchemy gave them to asyncpg.
            dialect = PGDialect_asyncpg()  # type: ignore[no-untyped-call]
            _, connect = dialect.create_connect_args(make_url(self.url))  # type: ignore[no-untyped-call]
            pool = ConnectionPool(connect, _POOL_SIZE, _POOL_WAIT)
            conn = await pool.acquire()
            try:
                current = await _current_revision(conn)
            finally:
                await pool.release(conn, reusable=True)
            if current != migrate.HEAD_REVISION:
                await self._migrate()
        except (*DRIVER_ERRORS, SQLAlchemyError) as exc:
            if pool is not None:
                pool.terminate()
            raise StoreError(f"cannot open PostgreSQL store {where}: {reason(exc)}") from exc
        except BaseException:
            if pool is not None:
                pool.terminate()
            raise
        self._pool = pool

    async def _migrate(self) -> None:
        """Bring the schema to the newest migration with Alembic (on SQLAlchemy), under an
        advisory lock: of processes starting together, one migrates and the others, once it
        has committed, find the schema current."""
        engine = create_async_engine(self.url)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
                if await self._revision(conn) != migrate.HEAD_REVISION:
                    await conn.run_sync(_alembic_upgrade)
        finally:
            await engine.dispose()

    async def open_existing(self) -> None:
        """``open`` (a database is never created here: it must exist to connect)."""
        await self.open()

    @staticmethod
    async def _revision(conn: AsyncConnection) -> str | None:
        """The Alembic revision of the database, or None before the first migration."""
        if await conn.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            return None
        revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        return None if revision is None else str(revision)

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Waits for the connections in use to come back (their statements to end).
        await pool.close(_CLOSE_WAIT)

    def _held(self, transaction: bool) -> AbstractAsyncContextManager[PostgresConnection]:
        pool = self._pool
        if pool is None:
            raise StoreError("the PostgreSQL store is not open")
        return held(pool, transaction)

    def _transaction(self) -> AbstractAsyncContextManager[PostgresConnection]:
        """A connection in a transaction, committed on success; driver errors as ``StoreError``."""
        return self._held(True)

    def _connection(self) -> AbstractAsyncContextManager[PostgresConnection]:
        """A connection outside a transaction: each statement commits on its own.

        For reads and single-statement writes: under READ COMMITTED every statement sees its
        own snapshot inside a transaction too, so BEGIN and COMMIT around them would only add
        round trips (a status read makes three such reads).
        """
        return self._held(False)

    # ------------------------------------------------------------------ reads

    async def get_execution_snapshot(
        self, execution_id: str, event_types: list[str]
    ) -> ExecutionSnapshot:
        async with self._connection() as conn:
            row = await conn.row(_SNAPSHOT, {"e": execution_id, "types": event_types})
        execution, runs, events = row if row is not None else (None, [], [])
        if execution is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return ExecutionSnapshot(
            execution_of(execution), [node_run_of(r) for r in runs], [event_of(e) for e in events]
        )

    # ------------------------------------------------------------------ dialect hooks

    def _in_list(self, column: str, values: list[str]) -> tuple[str, dict[str, Any]]:
        return f"{column} = ANY(:in_list)", {"in_list": values}

    def _chunks(self, values: list[str]) -> Iterator[list[str]]:
        if values:
            yield values  # one array parameter takes any number

    def _foreign_key_violation(self, exc: BaseException) -> bool:
        return getattr(exc, "sqlstate", None) == _FOREIGN_KEY_VIOLATION

    async def _write_batch(self, tx: PostgresConnection, batch: EncodedBatch) -> None:
        if batch.events:
            columns = _columns(batch.events, _EVENT_TYPES)
            await tx.run(_INSERT_EVENTS, columns)
            if batch.outbox:
                await tx.run(_INSERT_OUTBOX, columns)
        for with_output, statement in ((True, _UPSERT_RUNS_WITH_OUTPUT), (False, _UPSERT_RUNS)):
            part = [run for run in batch.runs if run[-1] is with_output]
            if part:
                await tx.run(statement, _columns(part, _RUN_TYPES))
        if batch.updates:
            await tx.run_each(
                UPDATE_EXECUTION, [dict(zip(UPDATE_ROW, u, strict=True)) for u in batch.updates]
            )
        if batch.results:
            await tx.run_each(SET_RESULT, [{"result": r, "id": i} for r, i in batch.results])
        if batch.logs:
            await tx.run(_INSERT_LOGS, _columns(batch.logs, _LOG_TYPES))

    async def _insert_control(self, tx: PostgresConnection, params: dict[str, Any]) -> int | None:
        row = await tx.row(
            "INSERT INTO events (id, execution_id, node_id, type, attempt, at, data)"
            " SELECT :id, e.id, NULL, :type, 0, :at, :data FROM executions e"
            " WHERE e.id = :e RETURNING seq",
            params,
        )
        return None if row is None else int(row[0])

    async def _renew(
        self, tx: PostgresConnection, owner: str, lease_until: float, ids: list[str]
    ) -> set[str]:
        sql = "UPDATE executions SET lease_until = :lease_until"
        sql += " WHERE owner = :owner AND id = ANY(:ids) RETURNING id"
        rows = await tx.rows(sql, {"lease_until": lease_until, "owner": owner, "ids": ids})
        return {row[0] for row in rows}

    async def _locked_audit_head(self, tx: PostgresConnection) -> Sequence[Any] | None:
        row = await tx.row(_LOCK_AUDIT_HEAD)
        if row is None:
            # No head row to lock yet (or it was removed): the first appenders queue on an
            # advisory lock instead, then chain to the head or, failing that, the last record.
            await tx.run("SELECT pg_advisory_xact_lock(:k)", {"k": _AUDIT_LOCK})
            row = await tx.row(_LOCK_AUDIT_HEAD)
        return row

    async def _insert_audit(
        self, tx: PostgresConnection, rows: list[AuditRow], kept: StoredHead
    ) -> None:
        params = _columns(rows, _AUDIT_TYPES)
        params.update(
            head_seq=kept.seq, head_hash=kept.hash, head_key_id=kept.key_id, head_mac=kept.mac
        )
        await tx.run(_INSERT_AUDIT, params)

    async def _delete_finished(
        self, tx: PostgresConnection, finished_before: float, now: float
    ) -> list[str]:
        rows = await tx.rows(
            "DELETE FROM executions WHERE status = ANY(:final)"
            " AND COALESCE(finished_at, updated_at, created_at) < :cutoff RETURNING id",
            {"final": [s.value for s in FINAL_EXECUTION_STATES], "cutoff": finished_before},
        )
        ids = [row[0] for row in rows]
        if ids:
            for table in ("events", "node_runs", "node_logs"):
                await tx.run(f"DELETE FROM {table} WHERE execution_id = ANY(:ids)", {"ids": ids})
        return ids


async def _current_revision(conn: Any) -> str | None:
    """The Alembic revision of the database (asyncpg ``conn``), None before the first migration."""
    if await conn.fetchval("SELECT to_regclass('alembic_version')") is None:
        return None
    revision = await conn.fetchval("SELECT version_num FROM alembic_version")
    return None if revision is None else str(revision)
