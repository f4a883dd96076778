"""``PostgresStore``: the scale-out store, on PostgreSQL through SQLAlchemy 2 (async) and asyncpg.

Users give ``postgresql://`` (or ``postgres://``) URLs; the adapter talks ``postgresql+asyncpg``.
``open`` migrates with Alembic under an advisory lock, so engine processes starting together
migrate once. Queries are plain SQL on the shared schema (``orchestrion.store.schema``) and the
rules every store applies the same way come from ``orchestrion.store.rules``. ``commit`` is one
transaction with one ``executemany`` per statement; ``claim_execution`` is one conditional
UPDATE, atomic across processes by PostgreSQL's row locks.

Insertion order, which SQLite reads from ``rowid``, is taken from what PostgreSQL has: node
runs follow the first journal event of each node, and definitions created in the same second
follow their inserting transaction (``age(xmin)``; each definition is inserted on its own).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

from sqlalchemy import Connection, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from orchestrion.core.events import Record
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.errors import ConfigurationError, ExecutionError, ExecutionNotFound, StoreError
from orchestrion.governance.audit_chain import ChainHead
from orchestrion.governance.trust import Trust
from orchestrion.store import migrate, rules
from orchestrion.store.audit import (
    AuditEntry,
    AuditFilter,
    AuditItem,
    AuditRecord,
    AuditRow,
    AuditSigner,
    StoredHead,
    entry_items,
    purge_items,
    record_of,
    seal_items,
    transition_items,
)
from orchestrion.store.base import (
    CommitBatch,
    DefinitionRecord,
    EventRecord,
    ExecutionFilter,
    ExecutionRecord,
    NodeRunRecord,
)

__all__ = ["PostgresStore", "asyncpg_url"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

_SCHEMES: Final = ("postgresql", "postgres", "postgresql+asyncpg")
# pg_advisory_xact_lock key held while migrating: b"orchestr" as a big-endian int64.
_MIGRATION_LOCK: Final = 0x6F72636865737472
_FOREIGN_KEY_VIOLATION: Final = "23503"
# Taken only while the audit head row does not exist yet (the first append): b"audit\0\0\0".
_AUDIT_LOCK: Final = 0x6175646974000000

_DEF_COLS = (
    "id, name, version, spec, content_hash, source_format, dialect, source, created_at, trust"
)
_EXEC_COLS = (
    "id, definition_id, status, phase, inputs, overrides, result, error, idempotency_key,"
    " correlation_id, parent_execution_id, parent_node_id, labels, created_at, started_at,"
    " finished_at, updated_at, owner, lease_until, trust"
)
_RUN_COLS = (
    "execution_id, node_id, state, attempt, started_at, finished_at, output, error,"
    " wait_reason, wake_at, compensation, updated_at"
)
_EVENT_COLS = (
    "seq, id, execution_id, node_id, type, attempt, at, correlation_id, causation_id, data"
)


def _marks(cols: str) -> str:
    """``:a, :b, ...`` for a column list."""
    return ", ".join(f":{c.strip()}" for c in cols.split(","))


_INSERT_DEFINITION = text(
    f"INSERT INTO definitions ({_DEF_COLS}) VALUES ({_marks(_DEF_COLS)})"
    " ON CONFLICT (name, version) DO NOTHING"
)
_INSERT_EXECUTION = text(
    f"INSERT INTO executions ({_EXEC_COLS}) VALUES ({_marks(_EXEC_COLS)})"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
# Many rows in one statement: each column is one array parameter (``unnest``), so a turn of
# N records costs one round trip and one parse instead of N bound executions. Journal rows
# keep the batch's order (``WITH ORDINALITY``): ``seq`` is the order of the journal.
_EVENT_ARRAY_TYPES = (
    ("id", "text"),
    ("execution_id", "text"),
    ("node_id", "text"),
    ("type", "text"),
    ("attempt", "int"),
    ("at", "float8"),
    ("correlation_id", "text"),
    ("causation_id", "text"),
    ("data", "text"),
)
_INSERT_EVENTS = text(
    "INSERT INTO events (id, execution_id, node_id, type, attempt, at, correlation_id,"
    " causation_id, data) SELECT id, execution_id, node_id, type, attempt, at, correlation_id,"
    " causation_id, data FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _EVENT_ARRAY_TYPES)
    + ") WITH ORDINALITY AS u(id, execution_id, node_id, type, attempt, at, correlation_id,"
    " causation_id, data, ord) ORDER BY ord"
)
_RUN_ARRAY_TYPES = (
    ("execution_id", "text"),
    ("node_id", "text"),
    ("state", "text"),
    ("attempt", "int"),
    ("started_at", "float8"),
    ("finished_at", "float8"),
    ("output", "text"),
    ("error", "text"),
    ("wait_reason", "text"),
    ("wake_at", "float8"),
    ("compensation", "text"),
    ("updated_at", "float8"),
)
_UPSERT_RUNS_SQL = (
    f"INSERT INTO node_runs ({_RUN_COLS}) SELECT * FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _RUN_ARRAY_TYPES)
    + ") ON CONFLICT (execution_id, node_id) DO UPDATE SET state = excluded.state,"
    " attempt = excluded.attempt, started_at = excluded.started_at,"
    " finished_at = excluded.finished_at, error = excluded.error,"
    " wait_reason = excluded.wait_reason, wake_at = excluded.wake_at,"
    " compensation = excluded.compensation, updated_at = excluded.updated_at"
)
# Two statements keep the output rule: without an output in this snapshot the stored one stays.
_UPSERT_RUNS = text(_UPSERT_RUNS_SQL)
_UPSERT_RUNS_WITH_OUTPUT = text(_UPSERT_RUNS_SQL + ", output = excluded.output")


_AUDIT_ARRAY_TYPES = (
    ("seq", "int8"),
    ("at", "float8"),
    ("action", "text"),
    ("actor", "text"),
    ("execution_id", "text"),
    ("node_id", "text"),
    ("outcome", "text"),
    ("details", "text"),
    ("prev_hash", "text"),
    ("key_id", "text"),
    ("hash", "text"),
)
_AUDIT_COLS = ", ".join(name for name, _ in _AUDIT_ARRAY_TYPES)
# The records and the new head in one statement (one round trip).
_INSERT_AUDIT = text(
    f"WITH added AS (INSERT INTO audit ({_AUDIT_COLS}) SELECT {_AUDIT_COLS} FROM unnest("
    + ", ".join(f"CAST(:{c} AS {t}[])" for c, t in _AUDIT_ARRAY_TYPES)
    + f") WITH ORDINALITY AS u({_AUDIT_COLS}, ord) ORDER BY ord RETURNING 1)"
    " INSERT INTO audit_head (id, seq, hash, key_id, mac)"
    " VALUES (1, :head_seq, :head_hash, :head_key_id, :head_mac)"
    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
    " key_id = excluded.key_id, mac = excluded.mac"
)
# The row lock on the head serialises appenders of every process until their commit.
_LOCK_AUDIT_HEAD = text("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")


def _columns(rows: list[dict[str, Any]], names: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    return {name: [row[name] for row in rows] for name, _ in names}


# A final status clears the ownership lease in the same statement.
_UPDATE_EXECUTION = text(
    "UPDATE executions SET status = :status, phase = COALESCE(:phase, phase),"
    " started_at = COALESCE(:started_at, started_at),"
    " finished_at = CASE WHEN :set_finished THEN :finished_at ELSE finished_at END,"
    " error = CASE WHEN :set_error THEN :error ELSE error END,"
    " owner = CASE WHEN :final THEN NULL ELSE owner END,"
    " lease_until = CASE WHEN :final THEN NULL ELSE lease_until END,"
    " updated_at = :at WHERE id = :id"
)
_SET_RESULT = text("UPDATE executions SET result = :result WHERE id = :id")
# IS NOT DISTINCT FROM: an expected owner of None matches NULL. A NULL lease never expires.
_CLAIM = text(
    "UPDATE executions SET owner = :owner, lease_until = :lease_until"
    " WHERE id = :id AND (owner IS NOT DISTINCT FROM :expected OR lease_until < :now)"
)
_RELEASE = "UPDATE executions SET owner = NULL, lease_until = NULL WHERE owner = :owner"
_UNFINISHED = [s.value for s in rules.UNFINISHED_STATUSES]
_OUTPUT_STATES = [s.value for s in rules.OUTPUT_STATES]
_PLAIN_NODE_DATA = {state: _dumps({"state": state.value}) for state in NodeState}


def asyncpg_url(url: str) -> str:
    """``url`` (``postgresql://``, ``postgres://`` or ``postgresql+asyncpg://``) for asyncpg."""
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError(f"invalid PostgreSQL URL: {exc}") from None
    if parsed.drivername.lower() not in _SCHEMES:
        raise ConfigurationError(
            f"not a PostgreSQL URL (expected postgresql://user@host/db): {parsed.drivername}://"
        )
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def _opt_json(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _opt_loads(value: str | None) -> Any:
    return None if value is None else _loads(value)


def _definition(row: Any) -> DefinitionRecord:
    return DefinitionRecord(
        id=row[0],
        name=row[1],
        version=row[2],
        spec=_loads(row[3]),
        content_hash=row[4],
        source_format=row[5],
        dialect=row[6],
        source=row[7],
        created_at=row[8],
        trust=Trust.of(row[9]),
    )


def _execution(row: Any) -> ExecutionRecord:
    return ExecutionRecord(
        id=row[0],
        definition_id=row[1],
        status=ExecutionStatus(row[2]),
        phase=row[3],
        inputs=_loads(row[4]),
        overrides=_loads(row[5]),
        result=_opt_loads(row[6]),
        error=_opt_loads(row[7]),
        idempotency_key=row[8],
        correlation_id=row[9],
        parent_execution_id=row[10],
        parent_node_id=row[11],
        labels=_loads(row[12]),
        created_at=row[13],
        started_at=row[14],
        finished_at=row[15],
        updated_at=row[16],
        owner=row[17],
        lease_until=row[18],
        trust=Trust.of(row[19]),
    )


def _node_run(row: Any) -> NodeRunRecord:
    return NodeRunRecord(
        execution_id=row[0],
        node_id=row[1],
        state=NodeState(row[2]),
        attempt=row[3],
        started_at=row[4],
        finished_at=row[5],
        output=_opt_loads(row[6]),
        error=_opt_loads(row[7]),
        wait_reason=row[8],
        wake_at=row[9],
        compensation=row[10],
        updated_at=row[11],
    )


def _event(row: Any) -> EventRecord:
    return EventRecord(
        seq=row[0],
        id=row[1],
        execution_id=row[2],
        node_id=row[3],
        type=row[4],
        attempt=row[5],
        at=row[6],
        correlation_id=row[7],
        causation_id=row[8],
        data=_opt_loads(row[9]),
    )


def _encode_output(execution_id: str, record: Record) -> str | None:
    try:
        return _opt_json(record.output)
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"output of node '{record.node}' in execution '{execution_id}'"
            f" is not JSON-serialisable: {exc}"
        ) from exc


def _alembic_upgrade(conn: Connection) -> None:
    """Run the migrations on ``conn`` (inside the caller's transaction)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    config.attributes["connection"] = conn
    command.upgrade(config, "head")


class PostgresStore:
    """A ``Store`` in one PostgreSQL database, migrated to the newest schema on ``open``."""

    def __init__(self, url: str) -> None:
        self.url = asyncpg_url(url)
        self._engine: AsyncEngine | None = None

    def __repr__(self) -> str:
        return f"PostgresStore({make_url(self.url)!r})"  # the URL's repr hides the password

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._engine is not None:
            return
        # pre_ping: after a server restart, pooled connections are dead; test each on checkout
        # instead of failing the first statement of every one of them.
        engine = create_async_engine(self.url, pool_pre_ping=True)
        try:
            async with engine.begin() as conn:
                await conn.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
                if await self._revision(conn) != migrate.HEAD_REVISION:
                    await conn.run_sync(_alembic_upgrade)
        except (SQLAlchemyError, OSError) as exc:
            await engine.dispose()
            raise StoreError(f"cannot open PostgreSQL store {self!r}: {exc}") from exc
        except BaseException:
            await engine.dispose()
            raise
        self._engine = engine

    @staticmethod
    async def _revision(conn: AsyncConnection) -> str | None:
        """The Alembic revision of the database, or None before the first migration."""
        if await conn.scalar(text("SELECT to_regclass('alembic_version')")) is None:
            return None
        revision = await conn.scalar(text("SELECT version_num FROM alembic_version"))
        return None if revision is None else str(revision)

    async def close(self) -> None:
        engine, self._engine = self._engine, None
        if engine is not None:
            await engine.dispose()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[AsyncConnection]:
        """A connection in a transaction, committed on success; driver errors as ``StoreError``."""
        engine = self._engine
        if engine is None:
            raise StoreError("the PostgreSQL store is not open")
        try:
            async with engine.begin() as conn:
                yield conn
        except (SQLAlchemyError, OSError) as exc:
            raise StoreError(f"PostgreSQL store: {exc}") from exc

    # ------------------------------------------------------------------ definitions

    async def put_definition(self, record: DefinitionRecord) -> DefinitionRecord:
        params = {
            "id": record.id,
            "name": record.name,
            "version": record.version,
            "spec": _dumps(record.spec),
            "content_hash": record.content_hash,
            "source_format": record.source_format,
            "dialect": record.dialect,
            "source": record.source,
            "created_at": record.created_at,
            "trust": Trust.of(record.trust).value,
        }
        async with self._transaction() as conn:
            if (await conn.execute(_INSERT_DEFINITION, params)).rowcount == 1:
                return record
            row = (
                await conn.execute(
                    text(f"SELECT {_DEF_COLS} FROM definitions WHERE name = :n AND version = :v"),
                    {"n": record.name, "v": record.version},
                )
            ).one()
        existing = _definition(row)
        if existing.content_hash != record.content_hash:
            raise ExecutionError(
                f"definition '{record.name}' version '{record.version}' already exists"
                " with different content"
            )
        return existing

    async def get_definition(self, definition_id: str) -> DefinitionRecord:
        async with self._transaction() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_DEF_COLS} FROM definitions WHERE id = :id"),
                    {"id": definition_id},
                )
            ).first()
        if row is None:
            raise ExecutionNotFound(f"definition '{definition_id}' not found")
        return _definition(row)

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        if version is not None:
            sql = f"SELECT {_DEF_COLS} FROM definitions WHERE name = :n AND version = :v"
        else:
            sql = (
                f"SELECT {_DEF_COLS} FROM definitions WHERE name = :n"
                " ORDER BY created_at DESC, age(xmin) LIMIT 1"
            )
        async with self._transaction() as conn:
            row = (await conn.execute(text(sql), {"n": name, "v": version})).first()
        if row is None:
            which = f"'{name}'" if version is None else f"'{name}' version '{version}'"
            raise ExecutionNotFound(f"definition {which} not found")
        return _definition(row)

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None:
        async with self._transaction() as conn:
            row = (
                await conn.execute(
                    text(
                        f"SELECT {_DEF_COLS} FROM definitions WHERE name = :n AND content_hash = :h"
                        " ORDER BY created_at DESC, age(xmin) LIMIT 1"
                    ),
                    {"n": name, "h": content_hash},
                )
            ).first()
        return None if row is None else _definition(row)

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        where = "WHERE name = :n" if name is not None else ""
        async with self._transaction() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_DEF_COLS} FROM definitions {where}"
                        " ORDER BY name, created_at, age(xmin) DESC LIMIT :limit OFFSET :offset"
                    ),
                    {"n": name, "limit": limit, "offset": offset},
                )
            ).all()
        return [_definition(row) for row in rows]

    async def next_version(self, name: str) -> str:
        async with self._transaction() as conn:
            versions = await conn.scalars(
                text("SELECT version FROM definitions WHERE name = :n"), {"n": name}
            )
            return rules.next_version(versions)

    # ------------------------------------------------------------------ executions

    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        async with self._transaction() as conn:
            return await self._insert_execution(conn, record)

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        async with self._transaction() as conn:
            return [await self._insert_execution(conn, record) for record in records]

    @staticmethod
    async def _insert_execution(
        conn: AsyncConnection, record: ExecutionRecord
    ) -> tuple[ExecutionRecord, bool]:
        params = {
            "id": record.id,
            "definition_id": record.definition_id,
            "status": record.status.value,
            "phase": record.phase,
            "inputs": _dumps(record.inputs),
            "overrides": _dumps(record.overrides),
            "result": _opt_json(record.result),
            "error": _opt_json(record.error),
            "idempotency_key": record.idempotency_key,
            "correlation_id": record.correlation_id,
            "parent_execution_id": record.parent_execution_id,
            "parent_node_id": record.parent_node_id,
            "labels": _dumps(record.labels),
            "created_at": record.created_at,
            "started_at": record.started_at,
            "finished_at": record.finished_at,
            "updated_at": record.updated_at,
            "owner": record.owner,
            "lease_until": record.lease_until,
            "trust": Trust.of(record.trust).value,
        }
        try:
            inserted = (await conn.execute(_INSERT_EXECUTION, params)).rowcount == 1
        except IntegrityError as exc:
            if getattr(exc.orig, "sqlstate", None) != _FOREIGN_KEY_VIOLATION:
                raise
            raise ExecutionNotFound(f"definition '{record.definition_id}' not found") from exc
        if inserted:
            return record, True
        row = (
            await conn.execute(
                text(f"SELECT {_EXEC_COLS} FROM executions WHERE idempotency_key = :k"),
                {"k": record.idempotency_key},
            )
        ).one()
        return _execution(row), False

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        async with self._transaction() as conn:
            row = (
                await conn.execute(
                    text(f"SELECT {_EXEC_COLS} FROM executions WHERE id = :id"),
                    {"id": execution_id},
                )
            ).first()
        if row is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return _execution(row)

    async def update_execution_inputs(
        self,
        execution_id: str,
        inputs: dict[str, Any],
        overrides: dict[str, dict[str, Any]],
        correlation_id: str | None,
    ) -> None:
        async with self._transaction() as conn:
            updated = (
                await conn.execute(
                    text(
                        "UPDATE executions SET inputs = :i, overrides = :o, correlation_id = :c"
                        " WHERE id = :id"
                    ),
                    {
                        "i": _dumps(inputs),
                        "o": _dumps(overrides),
                        "c": correlation_id,
                        "id": execution_id,
                    },
                )
            ).rowcount
        if not updated:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")

    async def distrust_execution(self, execution_id: str) -> None:
        async with self._transaction() as conn:
            updated = (
                await conn.execute(
                    text("UPDATE executions SET trust = :t WHERE id = :id"),
                    {"t": Trust.UNTRUSTED.value, "id": execution_id},
                )
            ).rowcount
        if not updated:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        where: list[str] = []
        params: dict[str, Any] = {}
        if flt.status:
            where.append("status = ANY(:statuses)")
            params["statuses"] = [status.value for status in flt.status]
        if flt.definition_name is not None:
            where.append("definition_id IN (SELECT id FROM definitions WHERE name = :dname)")
            params["dname"] = flt.definition_name
        if flt.definition_id is not None:
            where.append("definition_id = :did")
            params["did"] = flt.definition_id
        if flt.id_prefix is not None:  # left(), not LIKE: '%' and '_' are plain characters
            where.append("left(id, :plen) = :prefix")
            params["plen"], params["prefix"] = len(flt.id_prefix), flt.id_prefix
        if flt.created_after is not None:
            where.append("created_at > :after")
            params["after"] = flt.created_after
        if flt.created_before is not None:
            where.append("created_at < :before")
            params["before"] = flt.created_before
        if flt.cursor:
            params["c_at"], params["c_id"] = rules.decode_cursor(flt.cursor)
            where.append('(created_at < :c_at OR (created_at = :c_at AND id COLLATE "C" < :c_id))')
        limit = max(1, flt.limit)
        sql = f"SELECT {_EXEC_COLS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # One row more than asked tells whether a next page exists. COLLATE "C": ids compare
        # bytewise, as in SQLite, whatever the database's collation.
        sql += ' ORDER BY created_at DESC, id COLLATE "C" DESC LIMIT :limit'
        params["limit"] = limit + 1
        async with self._transaction() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        page = [_execution(row) for row in rows[:limit]]
        if len(rows) > limit:
            last = page[-1]
            return page, rules.encode_cursor(last.created_at, last.id)
        return page, None

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        async with self._transaction() as conn:
            rows = (
                await conn.execute(
                    text(
                        f"SELECT {_EXEC_COLS} FROM executions WHERE status = ANY(:s)"
                        f" OR (status = '{ExecutionStatus.PENDING.value}' AND owner IS NOT NULL"
                        " AND correlation_id IS NOT NULL)"
                        ' ORDER BY created_at, id COLLATE "C"'
                    ),
                    {"s": _UNFINISHED},
                )
            ).all()
        return [_execution(row) for row in rows]

    # ------------------------------------------------------------------ ownership leases

    async def claim_execution(
        self,
        execution_id: str,
        owner: str,
        lease_until: float,
        expected_owner: str | None,
        now: float,
    ) -> bool:
        # The conditional UPDATE is the compare-and-swap: a concurrent claimant waits on the
        # row lock, then re-checks the condition against the committed row.
        params = {
            "owner": owner,
            "lease_until": lease_until,
            "id": execution_id,
            "expected": expected_owner,
            "now": now,
        }
        async with self._transaction() as conn:
            if (await conn.execute(_CLAIM, params)).rowcount == 1:
                return True
            found = await conn.scalar(
                text("SELECT 1 FROM executions WHERE id = :id"), {"id": execution_id}
            )
        if found is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return False

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        if not execution_ids:
            return []
        async with self._transaction() as conn:
            held = set(
                await conn.scalars(
                    text(
                        "UPDATE executions SET lease_until = :lease_until"
                        " WHERE owner = :owner AND id = ANY(:ids) RETURNING id"
                    ),
                    {"lease_until": lease_until, "owner": owner, "ids": execution_ids},
                )
            )
        return [eid for eid in dict.fromkeys(execution_ids) if eid not in held]

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        if execution_ids is not None and not execution_ids:
            return  # an empty list releases nothing, unlike None
        async with self._transaction() as conn:
            if execution_ids is None:
                await conn.execute(text(_RELEASE), {"owner": owner})
            else:
                await conn.execute(
                    text(f"{_RELEASE} AND id = ANY(:ids)"), {"owner": owner, "ids": execution_ids}
                )

    # ------------------------------------------------------------------ node runs and events

    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        # Insertion order = the order of each node's first journal event.
        cols = ", ".join(f"r.{c.strip()}" for c in _RUN_COLS.split(","))
        sql = (
            f"SELECT {cols} FROM node_runs r LEFT JOIN ("
            " SELECT node_id, min(seq) AS first_seq FROM events"
            " WHERE execution_id = :e AND node_id IS NOT NULL GROUP BY node_id"
            ") f ON f.node_id = r.node_id"
            ' WHERE r.execution_id = :e ORDER BY f.first_seq NULLS LAST, r.node_id COLLATE "C"'
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(text(sql), {"e": execution_id})).all()
        return [_node_run(row) for row in rows]

    async def get_outputs(
        self, execution_id: str, node_ids: list[str] | None = None
    ) -> dict[str, Any]:
        sql = "SELECT node_id, output FROM node_runs WHERE execution_id = :e AND state = ANY(:s)"
        params: dict[str, Any] = {"e": execution_id, "s": _OUTPUT_STATES}
        if node_ids is not None:
            sql += " AND node_id = ANY(:nodes)"
            params["nodes"] = node_ids
        async with self._transaction() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        return {node_id: _opt_loads(output) for node_id, output in rows}

    async def commit(self, batch: CommitBatch) -> None:
        if not batch:
            return
        records = batch.records
        rules.check_batch(batch)
        # Everything is encoded before the transaction opens, so an unencodable output fails
        # before anything is written and the transaction holds its locks only for the writes.
        events: list[dict[str, Any]] = []
        updates: list[dict[str, Any]] = []
        # (execution, node) -> [last record, last record carrying an output or None]
        latest: dict[tuple[str, str], list[Any]] = {}
        correlation = batch.correlation
        for (execution_id, record), event_id, cause in zip(
            records, batch.event_ids, batch.causation, strict=True
        ):
            node = record.node
            data: str | None
            if node is not None:
                if rules.plain_node_record(record) and record.state is not None:
                    data = _PLAIN_NODE_DATA[record.state]
                else:
                    data = _dumps(rules.node_event_data(record))
                slot = latest.get((execution_id, node))
                if slot is None:
                    latest[execution_id, node] = [record, record if record.has_output else None]
                else:
                    slot[0] = record
                    if record.has_output:
                        slot[1] = record
            else:
                data = _opt_json(record.data)
                updates.append(self._execution_update(record, execution_id))
            events.append(
                {
                    "id": event_id,
                    "execution_id": execution_id,
                    "node_id": node,
                    "type": record.type,
                    "attempt": record.attempt,
                    "at": record.at,
                    "correlation_id": correlation.get(execution_id),
                    "causation_id": cause,
                    "data": data,
                }
            )
        runs = [
            {
                "execution_id": execution_id,
                "node_id": node,
                "state": None if last.state is None else last.state.value,
                "attempt": last.attempt,
                "started_at": last.started_at,
                "finished_at": last.finished_at,
                "output": _encode_output(execution_id, with_output) if with_output else None,
                "error": _opt_json(last.error),
                "wait_reason": last.wait_reason,
                "wake_at": last.wake_at,
                "compensation": last.extra.get("compensation"),
                "updated_at": last.at,
                "has_output": with_output is not None,
            }
            for (execution_id, node), (last, with_output) in latest.items()
        ]
        try:
            results = [
                {"result": _opt_json(result), "id": eid} for eid, result in batch.results.items()
            ]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"execution result is not JSON-serialisable: {exc}") from exc
        touched = {execution_id for execution_id, _ in records}
        touched.update(batch.results)
        async with self._transaction() as conn:
            # FOR UPDATE: a takeover (an UPDATE of owner) waits for this commit, or this
            # commit sees it and refuses the batch, so a stale engine never writes over it.
            rows = (
                await conn.execute(
                    text("SELECT id, owner FROM executions WHERE id = ANY(:ids) FOR UPDATE"),
                    {"ids": list(touched)},
                )
            ).all()
            found = {row[0] for row in rows}
            if len(found) != len(touched):
                missing = ", ".join(sorted(touched - found))
                raise StoreError(f"commit refers to unknown executions: {missing}")
            rules.check_owners(((row[0], row[1]) for row in rows), batch.owner)
            if events:
                await conn.execute(_INSERT_EVENTS, _columns(events, _EVENT_ARRAY_TYPES))
            if runs:
                for with_output, statement in (
                    (True, _UPSERT_RUNS_WITH_OUTPUT),
                    (False, _UPSERT_RUNS),
                ):
                    part = [run for run in runs if run["has_output"] is with_output]
                    if part:
                        await conn.execute(statement, _columns(part, _RUN_ARRAY_TYPES))
            if updates:
                await conn.execute(_UPDATE_EXECUTION, updates)
            if results:
                await conn.execute(_SET_RESULT, results)
            if batch.audit is not None and records:
                # Last, so the head lock is held only from here to the commit.
                await self._append_audit(conn, transition_items(batch), batch.audit)

    @staticmethod
    def _execution_update(record: Record, execution_id: str) -> dict[str, Any]:
        finished = rules.finished_at(record)
        error = rules.execution_error(record)
        return {
            "status": None if record.status is None else record.status.value,
            "phase": record.phase,
            "started_at": record.at if record.type == rules.STARTED else None,
            "set_finished": finished is not rules.KEEP,
            "finished_at": None if finished is rules.KEEP else finished,
            "set_error": error is not rules.KEEP,
            "error": None if error is rules.KEEP else _opt_json(error),
            "final": record.status in FINAL_EXECUTION_STATES,
            "at": record.at,
            "id": execution_id,
        }

    async def list_events(
        self,
        execution_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
        types: list[str] | None = None,
    ) -> list[EventRecord]:
        sql = f"SELECT {_EVENT_COLS} FROM events WHERE seq > :after"
        params: dict[str, Any] = {"after": after_seq, "limit": limit}
        if execution_id is not None:
            sql += " AND execution_id = :e"
            params["e"] = execution_id
        if types:
            sql += " AND type = ANY(:types)"
            params["types"] = types
        sql += " ORDER BY seq LIMIT :limit"
        async with self._transaction() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        return [_event(row) for row in rows]

    async def request_control(
        self, execution_id: str, event_id: str, request: dict[str, Any], at: float
    ) -> int:
        async with self._transaction() as conn:
            seq = (
                await conn.execute(
                    text(
                        "INSERT INTO events (id, execution_id, node_id, type, attempt, at, data)"
                        " SELECT :id, e.id, NULL, :type, 0, :at, :data FROM executions e"
                        " WHERE e.id = :e RETURNING seq"
                    ),
                    {
                        "id": event_id,
                        "e": execution_id,
                        "type": rules.CONTROL_REQUESTED,
                        "at": at,
                        "data": _dumps(request),
                    },
                )
            ).scalar()
        if seq is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return int(seq)

    async def journal_head(self) -> int:
        async with self._transaction() as conn:
            seq = (await conn.execute(text("SELECT MAX(seq) FROM events"))).scalar()
        return int(seq or 0)

    # ------------------------------------------------------------------ audit trail

    @staticmethod
    async def _append_audit(
        conn: AsyncConnection, items: list[AuditItem], signer: AuditSigner
    ) -> list[AuditRow]:
        """Seal after the head and insert, inside the caller's transaction, under the head's
        row lock: appenders in several processes queue there, so the chain never forks."""
        if not items:
            return []
        row = (await conn.execute(_LOCK_AUDIT_HEAD)).first()
        if row is None:
            # No head row to lock yet (or it was removed): the first appenders queue on an
            # advisory lock instead, then chain to the last record, if any.
            await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _AUDIT_LOCK})
            row = (await conn.execute(_LOCK_AUDIT_HEAD)).first()
            if row is None:
                row = (
                    await conn.execute(
                        text("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
                    )
                ).first()
        head = ChainHead(int(row[0]), str(row[1])) if row is not None else ChainHead()
        rows = seal_items(items, head, signer)
        params: dict[str, Any] = {
            name: [r[i] for r in rows] for i, (name, _) in enumerate(_AUDIT_ARRAY_TYPES)
        }
        kept = signer.head(rows[-1][0], rows[-1][10])
        params.update(
            head_seq=kept.seq, head_hash=kept.hash, head_key_id=kept.key_id, head_mac=kept.mac
        )
        await conn.execute(_INSERT_AUDIT, params)
        return rows

    async def append_audit(
        self, entries: list[AuditEntry], signer: AuditSigner
    ) -> list[AuditRecord]:
        if not entries:
            return []
        items = entry_items(entries)
        async with self._transaction() as conn:
            rows = await self._append_audit(conn, items, signer)
        return [record_of(row) for row in rows]

    async def list_audit(self, flt: AuditFilter) -> list[AuditRecord]:
        where = ["seq > :after"]
        params: dict[str, Any] = {"after": flt.after_seq, "limit": max(1, flt.limit)}
        if flt.execution_id is not None:
            where.append("execution_id = :e")
            params["e"] = flt.execution_id
        if flt.actor is not None:
            where.append("actor = :actor")
            params["actor"] = flt.actor
        if flt.action_prefix:
            where.append("left(action, :n) = :prefix")
            params.update(n=len(flt.action_prefix), prefix=flt.action_prefix)
        if flt.since is not None:
            where.append("at >= :since")
            params["since"] = flt.since
        if flt.until is not None:
            where.append("at < :until")
            params["until"] = flt.until
        sql = (
            f"SELECT {_AUDIT_COLS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT :limit"
        )
        async with self._transaction() as conn:
            rows = (await conn.execute(text(sql), params)).all()
        return [record_of(row) for row in rows]

    async def audit_head(self) -> StoredHead | None:
        async with self._transaction() as conn:
            row = (
                await conn.execute(
                    text("SELECT seq, hash, key_id, mac FROM audit_head WHERE id = 1")
                )
            ).first()
        return None if row is None else StoredHead(int(row[0]), row[1], row[2], row[3])

    # ------------------------------------------------------------------ retention

    async def purge_executions(
        self, finished_before: float, signer: AuditSigner | None, actor: str | None, now: float
    ) -> int:
        final = [s.value for s in FINAL_EXECUTION_STATES]
        async with self._transaction() as conn:
            ids = list(
                await conn.scalars(
                    text(
                        "DELETE FROM executions WHERE status = ANY(:final)"
                        " AND COALESCE(finished_at, updated_at, created_at) < :cutoff"
                        " RETURNING id"
                    ),
                    {"final": final, "cutoff": finished_before},
                )
            )
            if ids:
                for table in ("events", "node_runs"):
                    await conn.execute(
                        text(f"DELETE FROM {table} WHERE execution_id = ANY(:ids)"), {"ids": ids}
                    )
            if signer is not None:
                await self._append_audit(
                    conn, purge_items(len(ids), finished_before, actor, now), signer
                )
        return len(ids)
