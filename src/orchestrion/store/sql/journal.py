"""``SQLJournal``: the SQL store's journal side, written once for every dialect.

The engine's commit (rows encoded up front by ``batch.py``, checked and written in one
transaction), node runs and their outputs, the event journal, control requests, the audit
trail sealed under the head's lock, and retention purges.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from orchestrion.errors import ExecutionNotFound, StoreError, UnstorableValue
from orchestrion.governance.audit_chain import ChainHead
from orchestrion.store import rules
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
    request_items,
    seal_items,
    transition_items,
)
from orchestrion.store.base import (
    TOUCHED_LIMIT,
    CommitBatch,
    EventRecord,
    JournalRequest,
    LogFilter,
    LogLineRecord,
    Marks,
    NodeRunRecord,
)
from orchestrion.store.sql.batch import encode_batch
from orchestrion.store.sql.driver import C, SQLDriver
from orchestrion.store.sql.outbox import OWE_FOLLOW, owed_follow
from orchestrion.store.sql.rows import (
    AUDIT_COLS,
    EVENT_COLS,
    LOG_LINE_COLS,
    OUTPUT_STATES,
    dumps,
    event_of,
    log_line_of,
    node_run_of,
    opt_loads,
)

__all__ = ["SQLJournal"]

_MARKS = "SELECT (SELECT MAX(seq) FROM events), (SELECT MAX(seq) FROM node_logs)"
# Seq ranges, bounded above by the marks read just before: only rows committed by then.
_TOUCHED = (
    "SELECT DISTINCT execution_id FROM events WHERE seq > :ea AND seq <= :eh"
    " UNION SELECT DISTINCT execution_id FROM node_logs WHERE seq > :la AND seq <= :lh"
    " LIMIT :limit"
)


class SQLJournal(SQLDriver[C]):
    """Node runs, the journal, the audit trail and purges of a SQL store."""

    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(self.NODE_RUNS, {"e": execution_id})
        return [node_run_of(row) for row in rows]

    async def get_outputs(
        self, execution_id: str, node_ids: list[str] | None = None
    ) -> dict[str, Any]:
        sql = "SELECT node_id, output FROM node_runs WHERE execution_id = :e"
        sql += f" AND state IN {OUTPUT_STATES}"
        rows: list[Sequence[Any]] = []
        async with self._connection() as conn:
            if node_ids is None:
                rows += await conn.rows(sql, {"e": execution_id})
            else:
                for chunk in self._chunks(node_ids):
                    nodes, params = self._in_list("node_id", chunk)
                    rows += await conn.rows(f"{sql} AND {nodes}", {**params, "e": execution_id})
        return {node_id: opt_loads(output) for node_id, output in rows}

    async def commit(self, batch: CommitBatch) -> None:
        if not batch:
            return
        try:
            encoded = encode_batch(batch)  # before the transaction: see batch.py
        except (StoreError, TypeError, ValueError, RecursionError) as exc:
            raise UnstorableValue(f"the commit holds a value that cannot be stored: {exc}") from exc
        try:
            async with self._transaction() as tx:
                await self._check_executions(tx, encoded.touched, batch.owner)
                await self._write_batch(tx, encoded)
                for execution_id, ending in batch.follows:  # store/outbox.py
                    await tx.run(OWE_FOLLOW, owed_follow(execution_id, ending))
                for request in batch.requests:
                    await self._insert_control(tx, _control_params(request))
                if batch.audit is not None and batch.records:
                    # Last, so the head lock is held only from here to the commit.
                    await self._append_audit(tx, transition_items(batch), batch.audit)
        except (StoreError, UnicodeError) as exc:
            # The driver refused a value (text it cannot encode): writing it again would fail
            # again, which the engine must tell from a store that is away for a while.
            if not _refused_value(exc):
                raise
            raise UnstorableValue(f"the store refused a value of the commit: {exc}") from exc

    async def _check_executions(self, tx: C, ids: set[str], owner: str | None) -> None:
        """Refuse a batch about executions that do not exist (node runs have no foreign key),
        or, from an owner, about executions another process took over meanwhile. The rows are
        locked (``LOCK_ROWS``, or SQLite's write lock), so no takeover slips in before the
        writes: a stale engine never writes over a new owner's work."""
        if len(ids) == 1:  # an engine turn about one execution: one lookup, no dict
            (execution_id,) = ids
            row = await tx.row(
                f"SELECT owner FROM executions WHERE id = :id{self.LOCK_ROWS}", {"id": execution_id}
            )
            if row is None:
                raise StoreError(f"commit refers to unknown executions: {execution_id}")
            rules.check_owners(((execution_id, row[0]),), owner)
            return
        held_by: dict[str, str | None] = {}
        for chunk in self._chunks(list(ids)):
            cond, params = self._in_list("id", chunk)
            sql = f"SELECT id, owner FROM executions WHERE {cond}{self.LOCK_ROWS}"
            held_by.update({row[0]: row[1] for row in await tx.rows(sql, params)})
        if len(held_by) != len(ids):
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
        sql = f"SELECT {EVENT_COLS} FROM events WHERE seq > :after"
        params: dict[str, Any] = {"after": after_seq, "limit": limit}
        if execution_id is not None:
            sql += " AND execution_id = :e"
            params["e"] = execution_id
        else:
            sql += self.JOURNAL_ONLY
        if types:
            kinds, values = self._in_list("type", types)
            sql += f" AND {kinds}"
            params.update(values)
        async with self._connection() as conn:
            rows = await conn.rows(f"{sql} ORDER BY seq LIMIT :limit", params)
        return [event_of(row) for row in rows]

    async def list_node_logs(self, flt: LogFilter) -> list[LogLineRecord]:
        sql = f"SELECT {LOG_LINE_COLS} FROM node_logs WHERE execution_id = :e AND seq > :after"
        params: dict[str, Any] = {"e": flt.execution_id, "after": flt.after_seq}
        if flt.node_id is not None:
            sql += " AND node_id = :n"
            params["n"] = flt.node_id
        if flt.attempt is not None:
            sql += " AND attempt = :a"
            params["a"] = flt.attempt
        params["limit"] = flt.limit
        async with self._connection() as conn:
            rows = await conn.rows(f"{sql} ORDER BY seq LIMIT :limit", params)
        return [log_line_of(row) for row in rows]

    async def request_control(
        self,
        execution_id: str,
        event_id: str,
        request: dict[str, Any],
        at: float,
        audit: AuditSigner | None = None,
    ) -> int:
        params = _control_params(JournalRequest(execution_id, execution_id, event_id, request, at))
        async with self._transaction() as tx:
            seq = await self._insert_control(tx, params)
            if seq is not None and audit is not None:
                by = request.get("requested_by")
                owner = by if isinstance(by, str) else None
                items = request_items(execution_id, event_id, str(request.get("verb")), at, owner)
                await self._append_audit(tx, items, audit)
        if seq is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return seq

    async def journal_head(self) -> int:
        async with self._connection() as conn:
            row = await conn.row("SELECT MAX(seq) FROM events")
        return int((row and row[0]) or 0)

    async def touched_since(self, marks: Marks | None) -> tuple[Marks, set[str] | None]:
        async with self._connection() as conn:
            row = await conn.row(_MARKS)
            now = (int((row and row[0]) or 0), int((row and row[1]) or 0))
            if marks is None:
                return now, None
            if now == marks:
                return now, set()
            back = self.SEQ_LOOKBACK
            params = {
                "ea": marks[0] - back,
                "eh": now[0],
                "la": marks[1] - back,
                "lh": now[1],
                "limit": TOUCHED_LIMIT + 1,
            }
            rows = await conn.rows(_TOUCHED, params)
        touched = {str(r[0]) for r in rows}
        return now, touched if len(touched) <= TOUCHED_LIMIT else None

    # ------------------------------------------------------------------ audit trail

    async def _append_audit(
        self, tx: C, items: list[AuditItem], signer: AuditSigner
    ) -> list[AuditRow]:
        """Seal after the head and insert, inside the caller's transaction, under the head's
        lock: appenders in several processes queue there, so the chain never forks."""
        if not items:
            return []
        row = await self._locked_audit_head(tx)
        if row is None:  # no record yet, or the head row was removed: chain to the last one
            row = await tx.row("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
        head = ChainHead(int(row[0]), str(row[1])) if row is not None else ChainHead()
        rows = seal_items(items, head, signer)
        await self._insert_audit(tx, rows, signer.head(rows[-1][0], rows[-1][10]))
        return rows

    async def append_audit(
        self, entries: list[AuditEntry], signer: AuditSigner
    ) -> list[AuditRecord]:
        if not entries:
            return []
        items = entry_items(entries)
        async with self._transaction() as tx:
            rows = await self._append_audit(tx, items, signer)
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
            # substr, not LIKE: no wildcard characters to escape in the prefix
            where.append("substr(action, 1, :n) = :prefix")
            params.update(n=len(flt.action_prefix), prefix=flt.action_prefix)
        if flt.since is not None:
            where.append("at >= :since")
            params["since"] = flt.since
        if flt.until is not None:
            where.append("at < :until")
            params["until"] = flt.until
        sql = f"SELECT {AUDIT_COLS} FROM audit WHERE {' AND '.join(where)}"
        async with self._connection() as conn:
            rows = await conn.rows(f"{sql} ORDER BY seq LIMIT :limit", params)
        return [record_of(row) for row in rows]

    async def audit_head(self) -> StoredHead | None:
        async with self._connection() as conn:
            row = await conn.row("SELECT seq, hash, key_id, mac FROM audit_head WHERE id = 1")
        return None if row is None else StoredHead(int(row[0]), row[1], row[2], row[3])

    # ------------------------------------------------------------------ retention

    async def purge_executions(
        self, finished_before: float, signer: AuditSigner | None, actor: str | None, now: float
    ) -> int:
        async with self._transaction() as tx:
            ids = await self._delete_finished(tx, finished_before, now)
            # Dead letters of event sinks as old go too: the events they hold are of runs
            # that retention has let go (store/outbox.py).
            await tx.run(
                "DELETE FROM sink_deliveries WHERE status = 'dead' AND updated_at < :before",
                {"before": finished_before},
            )
            if signer is not None:
                items = purge_items(len(ids), finished_before, actor, now)
                await self._append_audit(tx, items, signer)
        return len(ids)


def _refused_value(exc: BaseException) -> bool:
    """Whether ``exc`` is, or was caused by, an encoder or the database refusing a value
    (SQLSTATE class 22, "data exception": a NUL in text, a number out of range...)."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain a driver and its wrappers make is short
        if seen is None:
            return False
        if isinstance(seen, UnicodeError | UnstorableValue):
            return True
        state = getattr(seen, "sqlstate", None) or getattr(seen, "pgcode", None)
        if isinstance(state, str) and state.startswith("22"):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _control_params(request: JournalRequest) -> dict[str, Any]:
    """The row of a ``control.requested`` event (``_insert_control``)."""
    return {
        "id": request.event_id,
        "e": request.execution_id,
        "type": rules.CONTROL_REQUESTED,
        "at": request.at,
        "data": dumps(request.request),
    }
