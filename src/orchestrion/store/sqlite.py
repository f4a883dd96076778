"""``SQLiteStore``: the embedded store, one SQLite file, on the stdlib ``sqlite3`` driver.

SQLAlchemy and Alembic are only used to migrate (``orchestrion.store.migrate``); every query
here is plain SQL on one connection, which is what keeps ``commit`` (the engine's hot path)
fast: params built up front, node-run upserts coalesced per node, one ``executemany`` per
statement, one transaction per batch. Calls run inline in the event loop: each is short
(microseconds to a few milliseconds), shorter than a hop to a thread would be.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
from orchestrion.store.checkpoint import WalCheckpointer

__all__ = ["SQLiteStore", "url_to_sqlite_path"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.loads

# SQLite's historical limit on host parameters is 999: stay well below it in IN lists.
_CHUNK = 500

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
# Journal seqs are SQLite rowids, which count up from the newest row. A purge that deletes
# the newest rows leaves this mark at the highest seq, so no seq a reader saw comes back; it
# belongs to no execution (""), and a later purge drops it once newer rows exist.
_MARK_EXECUTION = ""
_INSERT_SEQ_MARK = (
    "INSERT INTO events (seq, id, execution_id, node_id, type, attempt, at)"
    f" VALUES (?, ?, '{_MARK_EXECUTION}', NULL, 'journal.mark', 0, ?)"
)
_DROP_STALE_MARKS = (
    f"DELETE FROM events WHERE execution_id = '{_MARK_EXECUTION}'"
    " AND seq < (SELECT max(seq) FROM events)"
)

_INSERT_DEFINITION = (
    f"INSERT INTO definitions ({_DEF_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (name, version) DO NOTHING"
)
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({_EXEC_COLS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_INSERT_EVENT = (
    "INSERT INTO events (id, execution_id, node_id, type, attempt, at, correlation_id,"
    " causation_id, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The trailing parameter says whether this snapshot carries an output; without one the
# stored output stays (a node.compensated record must not erase the completed output).
_UPSERT_NODE_RUN = (
    f"INSERT INTO node_runs ({_RUN_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (execution_id, node_id) DO UPDATE SET state = excluded.state,"
    " attempt = excluded.attempt, started_at = excluded.started_at,"
    " finished_at = excluded.finished_at,"
    " output = CASE WHEN ? THEN excluded.output ELSE node_runs.output END,"
    " error = excluded.error, wait_reason = excluded.wait_reason, wake_at = excluded.wake_at,"
    " compensation = excluded.compensation, updated_at = excluded.updated_at"
)
# Flags before values: (set finished?, finished_at), (set error?, error). The two "final?"
# flags clear the ownership lease in the same statement, so commit costs no extra query.
_UPDATE_EXECUTION = (
    "UPDATE executions SET status = ?, phase = COALESCE(?, phase),"
    " started_at = COALESCE(?, started_at),"
    " finished_at = CASE WHEN ? THEN ? ELSE finished_at END,"
    " error = CASE WHEN ? THEN ? ELSE error END,"
    " owner = CASE WHEN ? THEN NULL ELSE owner END,"
    " lease_until = CASE WHEN ? THEN NULL ELSE lease_until END,"
    " updated_at = ? WHERE id = ?"
)
_SET_RESULT = "UPDATE executions SET result = ? WHERE id = ?"
_OWNER_OF = "SELECT owner FROM executions WHERE id = ?"
_AUDIT_COLS = (
    "seq, at, action, actor, execution_id, node_id, outcome, details, prev_hash, key_id, hash"
)
_INSERT_AUDIT = f"INSERT INTO audit ({_AUDIT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_SET_AUDIT_HEAD = (
    "INSERT INTO audit_head (id, seq, hash, key_id, mac) VALUES (1, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
    " key_id = excluded.key_id, mac = excluded.mac"
)
# ``IS``, not ``=``: an expected owner of None must match NULL. A NULL lease never expires.
_CLAIM = (
    "UPDATE executions SET owner = ?, lease_until = ?"
    " WHERE id = ? AND (owner IS ? OR lease_until < ?)"
)


def _sql_list(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


_UNFINISHED = _sql_list(tuple(s.value for s in rules.UNFINISHED_STATUSES))
_OUTPUT_STATES = _sql_list(tuple(s.value for s in rules.OUTPUT_STATES))

# Journal data of a node record that carries nothing but its new state, per state.
_PLAIN_NODE_DATA = {state: _dumps({"state": state.value}) for state in NodeState}


class _Held:
    """The store's connection held exclusively: ``with store._connection() as conn``.

    Driver errors in the block come out as ``StoreError``. A class rather than a generator
    context manager for the same reason as ``_Transaction``: every read takes one.
    """

    __slots__ = ("_store",)

    def __init__(self, store: SQLiteStore) -> None:
        self._store = store

    def __enter__(self) -> sqlite3.Connection:
        store = self._store
        store._lock.acquire()
        conn = store._conn
        if conn is None:
            store._lock.release()
            raise StoreError("the SQLite store is not open")
        return conn

    def __exit__(
        self, _kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        store = self._store
        store._lock.release()
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"SQLite store {store.path}: {exc}") from exc


class _Transaction(_Held):
    """A write transaction: ``with store._transaction() as conn``.

    IMMEDIATE takes the write lock up front, so two processes never deadlock upgrading read
    locks, and waits up to busy_timeout for it. Any exception rolls back; driver errors come
    out as ``StoreError``. A class rather than a generator context manager because every
    engine turn opens one (2-3 µs less per transaction in a micro-benchmark).
    """

    __slots__ = ()

    def __enter__(self) -> sqlite3.Connection:
        conn = super().__enter__()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except BaseException as exc:
            super().__exit__(type(exc), exc, None)  # gives the lock back
            raise
        return conn

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any
    ) -> None:
        store = self._store
        conn = store._conn
        assert conn is not None  # the lock is held: nobody closed it meanwhile
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
            super().__exit__(kind, exc, _tb)  # gives the lock back; a driver error as such


def url_to_sqlite_path(url: str) -> str:
    """The file path in ``sqlite:///relative.db`` or ``sqlite:////absolute.db``."""
    prefix = "sqlite:///"
    if not url.startswith(prefix):
        raise ConfigurationError(f"not a SQLite URL (expected {prefix}<path>): {url}")
    path = url[len(prefix) :].split("?", 1)[0]
    if not path or path == ":memory:":
        raise ConfigurationError("the SQLite store needs a file path; use memory:// instead")
    return path


def _chunks(ids: list[str]) -> Iterator[tuple[str, list[str]]]:
    """``ids`` in slices that fit an IN list, each with its placeholders."""
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        yield ", ".join("?" * len(chunk)), chunk


def _opt_json(value: Any) -> str | None:
    return None if value is None else _dumps(value)


def _opt_loads(text: str | None) -> Any:
    return None if text is None else _loads(text)


def _definition(row: tuple[Any, ...]) -> DefinitionRecord:
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


def _execution(row: tuple[Any, ...]) -> ExecutionRecord:
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


def _node_run(row: tuple[Any, ...]) -> NodeRunRecord:
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


def _event(row: tuple[Any, ...]) -> EventRecord:
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


class SQLiteStore:
    """A ``Store`` in one SQLite file (WAL mode), migrated to the newest schema on ``open``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._checkpointer: WalCheckpointer | None = None
        # check_same_thread=False lets other threads (a server, a CLI helper) share the
        # connection; the lock keeps their statements and transactions from interleaving.
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        if self._conn is not None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._migrate()
            conn = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=5.0
            )
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open SQLite store {self.path}: {exc}") from exc
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = ON")
            conn.execute("PRAGMA busy_timeout = 5000")
            # Checkpoints run on a thread of their own (store/checkpoint.py), not in commits.
            conn.execute("PRAGMA wal_autocheckpoint = 0")
        except sqlite3.Error as exc:
            conn.close()
            raise StoreError(f"cannot configure SQLite store {self.path}: {exc}") from exc
        self._checkpointer = WalCheckpointer(self.path)
        self._conn = conn

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
                conn.close()

    def _connection(self) -> _Held:
        """The open connection, held exclusively; driver errors come out as ``StoreError``."""
        return _Held(self)

    def _transaction(self) -> _Transaction:
        """A write transaction on the open connection, held exclusively (see _Transaction)."""
        return _Transaction(self)

    # ------------------------------------------------------------------ definitions

    async def put_definition(self, record: DefinitionRecord) -> DefinitionRecord:
        params = (
            record.id,
            record.name,
            record.version,
            _dumps(record.spec),
            record.content_hash,
            record.source_format,
            record.dialect,
            record.source,
            record.created_at,
            Trust.of(record.trust).value,
        )
        with self._transaction() as conn:
            if conn.execute(_INSERT_DEFINITION, params).rowcount == 1:
                return record
            row = conn.execute(
                f"SELECT {_DEF_COLS} FROM definitions WHERE name = ? AND version = ?",
                (record.name, record.version),
            ).fetchone()
        existing = _definition(row)
        if existing.content_hash != record.content_hash:
            raise ExecutionError(
                f"definition '{record.name}' version '{record.version}' already exists"
                " with different content"
            )
        return existing

    async def get_definition(self, definition_id: str) -> DefinitionRecord:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_DEF_COLS} FROM definitions WHERE id = ?", (definition_id,)
            ).fetchone()
        if row is None:
            raise ExecutionNotFound(f"definition '{definition_id}' not found")
        return _definition(row)

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        with self._connection() as conn:
            if version is not None:
                row = conn.execute(
                    f"SELECT {_DEF_COLS} FROM definitions WHERE name = ? AND version = ?",
                    (name, version),
                ).fetchone()
            else:
                row = conn.execute(
                    f"SELECT {_DEF_COLS} FROM definitions WHERE name = ?"
                    " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                    (name,),
                ).fetchone()
        if row is None:
            which = f"'{name}'" if version is None else f"'{name}' version '{version}'"
            raise ExecutionNotFound(f"definition {which} not found")
        return _definition(row)

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_DEF_COLS} FROM definitions WHERE name = ? AND content_hash = ?"
                " ORDER BY created_at DESC, rowid DESC LIMIT 1",
                (name, content_hash),
            ).fetchone()
        return None if row is None else _definition(row)

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        where, params = ("WHERE name = ?", [name]) if name is not None else ("", [])
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_DEF_COLS} FROM definitions {where}"
                " ORDER BY name, created_at, rowid LIMIT ? OFFSET ?",
                (*params, limit, offset),
            ).fetchall()
        return [_definition(row) for row in rows]

    async def next_version(self, name: str) -> str:
        with self._connection() as conn:
            rows = conn.execute("SELECT version FROM definitions WHERE name = ?", (name,))
            return rules.next_version(row[0] for row in rows)

    # ------------------------------------------------------------------ executions

    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        with self._transaction() as conn:
            return self._insert_execution(conn, record)

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        with self._transaction() as conn:
            return [self._insert_execution(conn, record) for record in records]

    @staticmethod
    def _insert_execution(
        conn: sqlite3.Connection, record: ExecutionRecord
    ) -> tuple[ExecutionRecord, bool]:
        params = (
            record.id,
            record.definition_id,
            record.status.value,
            record.phase,
            _dumps(record.inputs),
            _dumps(record.overrides),
            _opt_json(record.result),
            _opt_json(record.error),
            record.idempotency_key,
            record.correlation_id,
            record.parent_execution_id,
            record.parent_node_id,
            _dumps(record.labels),
            record.created_at,
            record.started_at,
            record.finished_at,
            record.updated_at,
            record.owner,
            record.lease_until,
            Trust.of(record.trust).value,
        )
        try:
            inserted = conn.execute(_INSERT_EXECUTION, params).rowcount == 1
        except sqlite3.IntegrityError as exc:
            if "FOREIGN KEY" not in str(exc):
                raise
            raise ExecutionNotFound(f"definition '{record.definition_id}' not found") from exc
        if inserted:
            return record, True
        row = conn.execute(
            f"SELECT {_EXEC_COLS} FROM executions WHERE idempotency_key = ?",
            (record.idempotency_key,),
        ).fetchone()
        return _execution(row), False

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT {_EXEC_COLS} FROM executions WHERE id = ?", (execution_id,)
            ).fetchone()
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
        with self._connection() as conn:
            updated = conn.execute(
                "UPDATE executions SET inputs = ?, overrides = ?, correlation_id = ? WHERE id = ?",
                (_dumps(inputs), _dumps(overrides), correlation_id, execution_id),
            ).rowcount
        if not updated:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")

    async def distrust_execution(self, execution_id: str) -> None:
        with self._connection() as conn:
            updated = conn.execute(
                "UPDATE executions SET trust = ? WHERE id = ?",
                (Trust.UNTRUSTED.value, execution_id),
            ).rowcount
        if not updated:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        where: list[str] = []
        params: list[Any] = []
        if flt.status:
            where.append(f"status IN ({', '.join('?' * len(flt.status))})")
            params.extend(status.value for status in flt.status)
        if flt.definition_name is not None:
            where.append("definition_id IN (SELECT id FROM definitions WHERE name = ?)")
            params.append(flt.definition_name)
        if flt.definition_id is not None:
            where.append("definition_id = ?")
            params.append(flt.definition_id)
        if flt.id_prefix is not None:  # substr, not LIKE: '%' and '_' are plain characters
            where.append("substr(id, 1, ?) = ?")
            params.extend((len(flt.id_prefix), flt.id_prefix))
        if flt.created_after is not None:
            where.append("created_at > ?")
            params.append(flt.created_after)
        if flt.created_before is not None:
            where.append("created_at < ?")
            params.append(flt.created_before)
        if flt.cursor:
            created_at, last_id = rules.decode_cursor(flt.cursor)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            params.extend((created_at, created_at, last_id))
        limit = max(1, flt.limit)
        sql = f"SELECT {_EXEC_COLS} FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        # One row more than asked tells whether a next page exists.
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        params.append(limit + 1)
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        page = [_execution(row) for row in rows[:limit]]
        if len(rows) > limit:
            last = page[-1]
            return page, rules.encode_cursor(last.created_at, last.id)
        return page, None

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_EXEC_COLS} FROM executions WHERE status IN {_UNFINISHED}"
                f" OR (status = '{ExecutionStatus.PENDING.value}' AND owner IS NOT NULL"
                " AND correlation_id IS NOT NULL)"
                " ORDER BY created_at, id"
            ).fetchall()
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
        # One conditional UPDATE is the compare-and-swap: the write lock makes it atomic
        # across processes, and rowcount says whether the condition held.
        with self._transaction() as conn:
            params = (owner, lease_until, execution_id, expected_owner, now)
            if conn.execute(_CLAIM, params).rowcount == 1:
                return True
            found = conn.execute("SELECT 1 FROM executions WHERE id = ?", (execution_id,))
            if found.fetchone() is None:
                raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return False

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        if not execution_ids:
            return []  # no write lock for nothing
        held: set[str] = set()
        with self._transaction() as conn:
            for marks, chunk in _chunks(execution_ids):
                conn.execute(
                    f"UPDATE executions SET lease_until = ? WHERE owner = ? AND id IN ({marks})",
                    (lease_until, owner, *chunk),
                )
                rows = conn.execute(
                    f"SELECT id FROM executions WHERE owner = ? AND id IN ({marks})",
                    (owner, *chunk),
                )
                held.update(row[0] for row in rows)
        return [eid for eid in dict.fromkeys(execution_ids) if eid not in held]

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        if execution_ids is not None and not execution_ids:
            return  # an empty list releases nothing, unlike None
        release = "UPDATE executions SET owner = NULL, lease_until = NULL WHERE owner = ?"
        with self._transaction() as conn:
            if execution_ids is None:
                conn.execute(release, (owner,))
                return
            for marks, chunk in _chunks(execution_ids):
                conn.execute(f"{release} AND id IN ({marks})", (owner, *chunk))

    # ------------------------------------------------------------------ node runs and events

    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_RUN_COLS} FROM node_runs WHERE execution_id = ? ORDER BY rowid",
                (execution_id,),
            ).fetchall()
        return [_node_run(row) for row in rows]

    async def get_outputs(
        self, execution_id: str, node_ids: list[str] | None = None
    ) -> dict[str, Any]:
        sql = (
            "SELECT node_id, output FROM node_runs WHERE execution_id = ?"
            f" AND state IN {_OUTPUT_STATES}"
        )
        rows: list[tuple[str, str | None]] = []
        with self._connection() as conn:
            if node_ids is None:
                rows = conn.execute(sql, (execution_id,)).fetchall()
            else:
                for start in range(0, len(node_ids), _CHUNK):
                    chunk = node_ids[start : start + _CHUNK]
                    marks = ", ".join("?" * len(chunk))
                    rows += conn.execute(
                        f"{sql} AND node_id IN ({marks})", (execution_id, *chunk)
                    ).fetchall()
        return {node_id: _opt_loads(output) for node_id, output in rows}

    async def commit(self, batch: CommitBatch) -> None:
        if not batch:
            return
        records = batch.records
        rules.check_batch(batch)
        # Everything is encoded before the transaction opens: the write lock is held only
        # for the inserts, and an unencodable output fails before anything is written.
        events: list[tuple[Any, ...]] = []
        updates: list[tuple[Any, ...]] = []
        # (execution, node) -> [last record, last record carrying an output or None]
        latest: dict[tuple[str, str], list[Any]] = {}
        correlation = batch.correlation
        plain = _PLAIN_NODE_DATA
        for (execution_id, record), event_id, cause in zip(
            records, batch.event_ids, batch.causation, strict=True
        ):
            node = record.node
            data: str | None
            if node is not None:
                if rules.plain_node_record(record) and record.state is not None:
                    data = plain[record.state]  # the common case: no dict, no dumps
                else:
                    data = _dumps(rules.node_event_data(record))
                key = (execution_id, node)
                slot = latest.get(key)
                if slot is None:
                    latest[key] = [record, record if record.has_output else None]
                else:
                    slot[0] = record
                    if record.has_output:
                        slot[1] = record
            else:
                data = _opt_json(record.data)  # the machine's own dicts: always encodable
                updates.append(self._execution_update(record, execution_id))
            events.append(
                (
                    event_id,
                    execution_id,
                    node,
                    record.type,
                    record.attempt,
                    record.at,
                    correlation.get(execution_id),
                    cause,
                    data,
                )
            )
        runs = [
            (
                execution_id,
                node,
                None if last.state is None else last.state.value,
                last.attempt,
                last.started_at,
                last.finished_at,
                None if with_output is None else _encode_output(execution_id, with_output),
                _opt_json(last.error),
                last.wait_reason,
                last.wake_at,
                last.extra.get("compensation"),
                last.at,
                with_output is not None,
            )
            for (execution_id, node), (last, with_output) in latest.items()
        ]
        try:
            results = [(_opt_json(result), eid) for eid, result in batch.results.items()]
        except (TypeError, ValueError) as exc:
            raise StoreError(f"execution result is not JSON-serialisable: {exc}") from exc
        touched = {execution_id for execution_id, _ in records}
        touched.update(batch.results)
        with self._transaction() as conn:
            self._check_executions(conn, touched, batch.owner)
            conn.executemany(_INSERT_EVENT, events)
            if runs:
                conn.executemany(_UPSERT_NODE_RUN, runs)
            if updates:
                conn.executemany(_UPDATE_EXECUTION, updates)
            if results:
                conn.executemany(_SET_RESULT, results)
            if batch.audit is not None and records:
                self._append_audit(conn, transition_items(batch), batch.audit)

    @staticmethod
    def _execution_update(record: Record, execution_id: str) -> tuple[Any, ...]:
        finished = rules.finished_at(record)
        error = rules.execution_error(record)
        final = record.status in FINAL_EXECUTION_STATES
        return (
            None if record.status is None else record.status.value,
            record.phase,
            record.at if record.type == rules.STARTED else None,
            finished is not rules.KEEP,
            None if finished is rules.KEEP else finished,
            error is not rules.KEEP,
            None if error is rules.KEEP else _opt_json(error),
            final,
            final,
            record.at,
            execution_id,
        )

    @staticmethod
    def _check_executions(conn: sqlite3.Connection, ids: set[str], owner: str | None) -> None:
        """Refuse a batch about executions that do not exist (node runs have no foreign key),
        or, from an owner, about executions another process took over meanwhile. The write
        lock is held already, so no takeover can slip in between this check and the writes."""
        if len(ids) == 1:  # an engine turn about one execution: one lookup, no dict
            (execution_id,) = ids
            row = conn.execute(_OWNER_OF, (execution_id,)).fetchone()
            if row is None:
                raise StoreError(f"commit refers to unknown executions: {execution_id}")
            rules.check_owners(((execution_id, row[0]),), owner)
            return
        wanted = list(ids)
        held_by: dict[str, str | None] = {}
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            rows = conn.execute(f"SELECT id, owner FROM executions WHERE id IN ({marks})", chunk)
            held_by.update(rows)
        if len(held_by) != len(wanted):
            missing = ", ".join(sorted(ids - held_by.keys()))
            raise StoreError(f"commit refers to unknown executions: {missing}")
        rules.check_owners(held_by.items(), owner)

    async def list_events(
        self,
        execution_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
        types: list[str] | None = None,
    ) -> list[EventRecord]:
        sql = f"SELECT {_EVENT_COLS} FROM events WHERE seq > ?"
        params: list[Any] = [after_seq]
        if execution_id is not None:
            sql += " AND execution_id = ?"
            params.append(execution_id)
        else:
            sql += " AND execution_id != ?"
            params.append(_MARK_EXECUTION)
        if types:
            sql += f" AND type IN ({', '.join('?' * len(types))})"
            params.extend(types)
        sql += " ORDER BY seq LIMIT ?"
        params.append(limit)
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_event(row) for row in rows]

    async def request_control(
        self, execution_id: str, event_id: str, request: dict[str, Any], at: float
    ) -> int:
        row = (event_id, execution_id, None, rules.CONTROL_REQUESTED, 0, at, None, None)
        with self._transaction() as conn:
            if conn.execute(_OWNER_OF, (execution_id,)).fetchone() is None:
                raise ExecutionNotFound(f"execution '{execution_id}' not found")
            cursor = conn.execute(_INSERT_EVENT, (*row, _dumps(request)))
            return int(cursor.lastrowid or 0)

    async def journal_head(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT MAX(seq) FROM events").fetchone()
        return int(row[0] or 0)

    # ------------------------------------------------------------------ audit trail

    @staticmethod
    def _append_audit(
        conn: sqlite3.Connection, items: list[AuditItem], signer: AuditSigner
    ) -> list[AuditRow]:
        """Seal after the head and insert, inside the caller's write transaction: SQLite's
        single writer is the lock that keeps processes from forking the chain."""
        row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
        if row is None:  # no record yet, or the head row was removed: chain to the last one
            row = conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        head = ChainHead(row[0], row[1]) if row is not None else ChainHead()
        rows = seal_items(items, head, signer)
        if rows:
            conn.executemany(_INSERT_AUDIT, rows)
            kept = signer.head(rows[-1][0], rows[-1][10])
            conn.execute(_SET_AUDIT_HEAD, (kept.seq, kept.hash, kept.key_id, kept.mac))
        return rows

    async def append_audit(
        self, entries: list[AuditEntry], signer: AuditSigner
    ) -> list[AuditRecord]:
        if not entries:
            return []
        items = entry_items(entries)
        with self._transaction() as conn:
            rows = self._append_audit(conn, items, signer)
        return [record_of(row) for row in rows]

    async def list_audit(self, flt: AuditFilter) -> list[AuditRecord]:
        where = ["seq > ?"]
        params: list[Any] = [flt.after_seq]
        if flt.execution_id is not None:
            where.append("execution_id = ?")
            params.append(flt.execution_id)
        if flt.actor is not None:
            where.append("actor = ?")
            params.append(flt.actor)
        if flt.action_prefix:
            # substr, not LIKE: no wildcard characters to escape in the prefix
            where.append("substr(action, 1, ?) = ?")
            params.extend((len(flt.action_prefix), flt.action_prefix))
        if flt.since is not None:
            where.append("at >= ?")
            params.append(flt.since)
        if flt.until is not None:
            where.append("at < ?")
            params.append(flt.until)
        params.append(max(1, flt.limit))
        sql = f"SELECT {_AUDIT_COLS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq LIMIT ?"
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        return [record_of(row) for row in rows]

    async def audit_head(self) -> StoredHead | None:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT seq, hash, key_id, mac FROM audit_head WHERE id = 1"
            ).fetchone()
        return None if row is None else StoredHead(int(row[0]), row[1], row[2], row[3])

    # ------------------------------------------------------------------ retention

    async def purge_executions(
        self, finished_before: float, signer: AuditSigner | None, actor: str | None, now: float
    ) -> int:
        final = _sql_list(tuple(s.value for s in FINAL_EXECUTION_STATES))
        with self._transaction() as conn:
            ids = [
                row[0]
                for row in conn.execute(
                    # A final execution without a finish time (never started) ages from its
                    # last update, then its creation.
                    f"SELECT id FROM executions WHERE status IN {final}"
                    " AND COALESCE(finished_at, updated_at, created_at) < ?",
                    (finished_before,),
                )
            ]
            (newest,) = conn.execute("SELECT max(seq) FROM events").fetchone()
            for marks, chunk in _chunks(ids):
                for table, column in (
                    ("events", "execution_id"),
                    ("node_runs", "execution_id"),
                    ("executions", "id"),
                ):
                    conn.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)
            if newest is not None:
                (left,) = conn.execute("SELECT max(seq) FROM events").fetchone()
                if left is None or left < newest:
                    conn.execute(_INSERT_SEQ_MARK, (newest, f"mark-{newest}", now))
                conn.execute(_DROP_STALE_MARKS)
            if signer is not None:
                self._append_audit(conn, purge_items(len(ids), finished_before, actor, now), signer)
        return len(ids)
