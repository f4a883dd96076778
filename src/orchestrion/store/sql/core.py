"""``SQLStore``: the ``Store`` written once in SQL, for every dialect.

Each method is a query (or a few) on the shared schema with ``:name`` parameters, run on a narrow
``Connection``. A dialect (``sqlite.py``, ``postgres.py``) subclasses it with its driver and a
few hooks where the databases differ (``driver.py``). Definitions, executions and leases are
here; the commit, journal, audit trail and purges in ``journal.py``; ``batch.py`` encodes turns.
"""

from __future__ import annotations

from typing import Any

from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import ExecutionError, ExecutionNotFound
from orchestrion.governance.trust import Trust
from orchestrion.store import rules
from orchestrion.store.base import (
    DefinitionRecord,
    ExecutionFilter,
    ExecutionRecord,
    ExecutionSnapshot,
    TriggerClaim,
)
from orchestrion.store.pending_trigger import PendingTrigger
from orchestrion.store.sql.driver import C
from orchestrion.store.sql.journal import SQLJournal
from orchestrion.store.sql.outbox import SQLOutbox
from orchestrion.store.sql.rows import (
    DEF_COLS,
    EVENT_COLS,
    EXEC_COLS,
    UNFINISHED,
    definition_of,
    definition_params,
    dumps,
    event_of,
    execution_of,
    execution_params,
    keys_term,
    marks,
    node_run_of,
)
from orchestrion.store.sql.schedules import SQLSchedules
from orchestrion.store.sql.sessions import SQLSessions

__all__ = ["SQLStore"]

_INSERT_DEFINITION = (
    f"INSERT INTO definitions ({DEF_COLS}) VALUES ({marks(DEF_COLS)})"
    " ON CONFLICT (name, version) DO NOTHING"
)
_INSERT_EXECUTION = (
    f"INSERT INTO executions ({EXEC_COLS}, id_reversed)"
    f" VALUES ({marks(EXEC_COLS)}, :id_reversed)"
    " ON CONFLICT (idempotency_key) DO NOTHING"
)
_RELEASE = "UPDATE executions SET owner = NULL, lease_until = NULL WHERE owner = :owner"
_DEFINITIONS = f"SELECT {DEF_COLS} FROM definitions"
_EXECUTIONS = f"SELECT {EXEC_COLS} FROM executions"
_EVENTS = f"SELECT {EVENT_COLS} FROM events"


def _successor(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (None when every
    character is the last there is: no string is)."""
    for at in range(len(prefix) - 1, -1, -1):
        code = ord(prefix[at]) + 1
        if code == 0xD800:  # surrogates are no characters of their own: step over them
            code = 0xE000
        if code <= 0x10FFFF:
            return prefix[:at] + chr(code)
    return None


# A key range (the unique index on idempotency_key answers it) of constant prefixes; ``{b}``
# is the dialect's byte-wise collation.
_KEY_PREFIX = "(idempotency_key{{b}} >= '{lo}' AND idempotency_key{{b}} < '{hi}')"
_SCHEDULED = _KEY_PREFIX.format(lo=rules.SCHEDULE_KEY, hi=_successor(rules.SCHEDULE_KEY))
_EVENTED = _KEY_PREFIX.format(lo=rules.EVENT_KEY, hi=_successor(rules.EVENT_KEY))
# What ``rules.trigger_of`` decides, as SQL (the prefixes are constants, not client text).
_TRIGGER_TERMS = {
    "workflow": "parent_execution_id IS NOT NULL",
    "schedule": f"(parent_execution_id IS NULL AND {_SCHEDULED})",
    "event": f"(parent_execution_id IS NULL AND {_EVENTED})",
    "api": f"(parent_execution_id IS NULL AND (idempotency_key IS NULL"
    f" OR NOT ({_SCHEDULED} OR {_EVENTED})))",
}


class SQLStore(SQLJournal[C], SQLSchedules[C], SQLOutbox[C], SQLSessions[C]):
    """A ``Store`` on a SQL database; a dialect fills in the driver and the hooks
    (``driver.py``). Definitions, executions and leases here; the journal side in
    ``journal.py``."""

    # ------------------------------------------------------------------ definitions

    async def put_definition(self, record: DefinitionRecord) -> DefinitionRecord:
        async with self._transaction() as tx:
            if await tx.run(_INSERT_DEFINITION, definition_params(record)) == 1:
                return record
            row = await tx.row(
                f"{_DEFINITIONS} WHERE name = :n AND version = :v",
                {"n": record.name, "v": record.version},
            )
        assert row is not None  # the insert met this row
        existing = definition_of(row)
        if existing.content_hash != record.content_hash:
            raise ExecutionError(
                f"definition '{record.name}' version '{record.version}' already exists"
                " with different content"
            )
        return existing

    async def get_definition(self, definition_id: str) -> DefinitionRecord:
        async with self._connection() as conn:
            row = await conn.row(f"{_DEFINITIONS} WHERE id = :id", {"id": definition_id})
        if row is None:
            raise ExecutionNotFound(f"definition '{definition_id}' not found")
        return definition_of(row)

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        if version is not None:
            sql = f"{_DEFINITIONS} WHERE name = :n AND version = :v"
        else:
            # The active version: the one marked active, else the newest available.
            sql = (
                f"{_DEFINITIONS} WHERE name = :n AND status <> '{rules.DEPRECATED}' ORDER BY"
                f" CASE WHEN status = '{rules.ACTIVE}' THEN 0 ELSE 1 END,"
                f" created_at DESC, {self.NEWEST_FIRST} LIMIT 1"
            )
        async with self._connection() as conn:
            row = await conn.row(sql, {"n": name, "v": version})
            if row is None and version is None:
                any_row = await conn.row("SELECT 1 FROM definitions WHERE name = :n", {"n": name})
                if any_row is not None:
                    raise ExecutionNotFound(rules.no_active_version(name))
        if row is None:
            which = f"'{name}'" if version is None else f"'{name}' version '{version}'"
            raise ExecutionNotFound(f"definition {which} not found")
        return definition_of(row)

    async def set_definition_status(
        self, name: str, version: str, status: str, at: float, by: str | None = None
    ) -> DefinitionRecord:
        if status not in rules.DEFINITION_STATUSES:
            raise ExecutionError(f"unknown definition status {status!r}")
        changed = {"n": name, "v": version, "s": status, "at": at, "by": by}
        async with self._transaction() as tx:
            # The name's rows are locked first (PostgreSQL; SQLite's write lock does it), so
            # two activations at once cannot each demote the other's and leave two active.
            held = await tx.rows(
                f"SELECT version, status FROM definitions WHERE name = :n{self.LOCK_ROWS}",
                {"n": name},
            )
            current = {str(row[0]): str(row[1]) for row in held}.get(version)
            if current is None:
                raise ExecutionNotFound(f"definition '{name}' version '{version}' not found")
            rules.check_status_change(name, version, current, status)
            if status == rules.ACTIVE:  # at most one active version per name
                await tx.run(
                    "UPDATE definitions SET status = :avail, status_changed_at = :at,"
                    " status_changed_by = :by WHERE name = :n AND status = :s AND version <> :v",
                    {**changed, "avail": rules.AVAILABLE},
                )
            count = await tx.run(
                "UPDATE definitions SET status = :s, status_changed_at = :at,"
                " status_changed_by = :by WHERE name = :n AND version = :v",
                changed,
            )
            if count != 1:
                raise ExecutionNotFound(f"definition '{name}' version '{version}' not found")
            row = await tx.row(
                f"{_DEFINITIONS} WHERE name = :n AND version = :v", {"n": name, "v": version}
            )
        assert row is not None
        return definition_of(row)

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None:
        sql = f"{_DEFINITIONS} WHERE name = :n AND content_hash = :h"
        async with self._connection() as conn:
            row = await conn.row(
                f"{sql} ORDER BY created_at DESC, {self.NEWEST_FIRST} LIMIT 1",
                {"n": name, "h": content_hash},
            )
        return None if row is None else definition_of(row)

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        where = "WHERE name = :n" if name is not None else ""
        sql = f"{_DEFINITIONS} {where} ORDER BY name, created_at, {self.OLDEST_FIRST}"
        async with self._connection() as conn:
            rows = await conn.rows(
                f"{sql} LIMIT :limit OFFSET :offset", {"n": name, "limit": limit, "offset": offset}
            )
        return [definition_of(row) for row in rows]

    async def definition_heads(self) -> list[tuple[str, str]]:
        sql = (
            f"SELECT name, id, status FROM definitions WHERE status <> '{rules.DEPRECATED}'"
            f" ORDER BY name, created_at, {self.OLDEST_FIRST}"
        )
        async with self._connection() as conn:
            rows = await conn.rows(sql)
        return rules.active_heads((name, i, status) for name, i, status in rows)

    async def next_version(self, name: str) -> str:
        async with self._connection() as conn:
            rows = await conn.rows("SELECT version FROM definitions WHERE name = :n", {"n": name})
        return rules.next_version(row[0] for row in rows)

    # ------------------------------------------------------------------ executions

    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        # No transaction: the insert is one statement, and the read of the execution that
        # holds the key, when it is taken, sees it committed (the insert waited for that).
        # On PostgreSQL that is one round trip instead of three (BEGIN, INSERT, COMMIT).
        async with self._connection() as conn:
            return await self._insert_execution(conn, record)

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        async with self._transaction() as tx:
            return [await self._insert_execution(tx, record) for record in records]

    async def _insert_execution(
        self, tx: C, record: ExecutionRecord
    ) -> tuple[ExecutionRecord, bool]:
        try:
            inserted = await tx.run(_INSERT_EXECUTION, execution_params(record)) == 1
        except Exception as exc:
            if not self._foreign_key_violation(exc):
                raise
            raise ExecutionNotFound(f"definition '{record.definition_id}' not found") from exc
        if inserted:
            return record, True
        row = await tx.row(
            f"{_EXECUTIONS} WHERE idempotency_key = :k", {"k": record.idempotency_key}
        )
        assert row is not None  # the key was taken
        return execution_of(row), False

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        async with self._connection() as conn:
            row = await conn.row(f"{_EXECUTIONS} WHERE id = :id", {"id": execution_id})
        if row is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return execution_of(row)

    async def get_execution_snapshot(
        self, execution_id: str, event_types: list[str]
    ) -> ExecutionSnapshot:
        # One connection for the three queries: on PostgreSQL one checkout instead of three.
        params: dict[str, Any] = {"e": execution_id}
        events_sql = None
        if event_types:
            kinds, values = self._in_list("type", event_types)
            events_sql = f"{_EVENTS} WHERE execution_id = :e AND {kinds} ORDER BY seq"
            params.update(values)
        async with self._connection() as conn:
            row = await conn.row(f"{_EXECUTIONS} WHERE id = :e", params)
            if row is None:
                raise ExecutionNotFound(f"execution '{execution_id}' not found")
            runs = await conn.rows(self.NODE_RUNS, params)
            events = await conn.rows(events_sql, params) if events_sql is not None else []
        return ExecutionSnapshot(
            execution_of(row), [node_run_of(r) for r in runs], [event_of(e) for e in events]
        )

    async def update_execution_inputs(
        self,
        execution_id: str,
        inputs: dict[str, Any],
        overrides: dict[str, dict[str, Any]],
        correlation_id: str | None,
    ) -> None:
        sql = "UPDATE executions SET inputs = :i, overrides = :o, correlation_id = :c"
        params = {"i": dumps(inputs), "o": dumps(overrides), "c": correlation_id}
        await self._update_one(f"{sql} WHERE id = :id", params, execution_id)

    async def distrust_execution(self, execution_id: str) -> None:
        sql = "UPDATE executions SET trust = :t WHERE id = :id"
        await self._update_one(sql, {"t": Trust.UNTRUSTED.value}, execution_id)

    async def trigger_pending(self, trigger: PendingTrigger) -> bool:
        # One conditional UPDATE: the row lock (PostgreSQL) or the write lock (SQLite) makes
        # it a compare-and-swap across processes; the rowcount says whether it held.
        params = {
            "i": dumps(trigger.inputs),
            "o": dumps(trigger.overrides),
            "c": trigger.correlation_id,
            "id": trigger.execution_id,
        }
        distrust = ""
        if trigger.distrust:
            distrust, params["t"] = ", trust = :t", Trust.UNTRUSTED.value
        sql = (
            f"UPDATE executions SET inputs = :i, overrides = :o, correlation_id = :c{distrust}"
            f" WHERE id = :id AND status = '{ExecutionStatus.PENDING.value}'"
            " AND correlation_id IS NULL"
        )
        return await self._update_if(sql, params)

    async def _update_if(self, sql: str, params: dict[str, Any]) -> bool:
        """Run a conditional UPDATE of the execution ``params["id"]``: whether it matched
        (False: the condition did not hold); ExecutionNotFound when there is no such row."""
        async with self._connection() as conn:
            if await conn.run(sql, params) == 1:
                return True
            found = await conn.row("SELECT 1 FROM executions WHERE id = :id", {"id": params["id"]})
        if found is None:
            raise ExecutionNotFound(f"execution '{params['id']}' not found")
        return False

    async def _update_one(self, sql: str, params: dict[str, Any], execution_id: str) -> None:
        async with self._connection() as conn:
            updated = await conn.run(sql, {**params, "id": execution_id})
        if not updated:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        where, params = self._execution_filter(flt)
        if flt.cursor:
            params["c_at"], params["c_id"] = rules.decode_cursor(flt.cursor)
            cursor = f"id{self.BYTEWISE} < :c_id"
            where.append(f"(created_at < :c_at OR (created_at = :c_at AND {cursor}))")
        limit = max(1, flt.limit)
        sql = _EXECUTIONS
        if where:
            sql += " WHERE " + " AND ".join(where)
        # One row more than asked tells whether a next page exists.
        sql += f" ORDER BY created_at DESC, id{self.BYTEWISE} DESC LIMIT :limit"
        params["limit"] = limit + 1
        async with self._connection() as conn:
            rows = await conn.rows(sql, params)
        page = [execution_of(row) for row in rows[:limit]]
        if len(rows) > limit:
            last = page[-1]
            return page, rules.encode_cursor(last.created_at, last.id)
        return page, None

    async def count_executions(self, flt: ExecutionFilter) -> dict[ExecutionStatus, int]:
        where, params = self._execution_filter(flt)
        sql = "SELECT status, COUNT(*) FROM executions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        ranged = flt.created_after is not None or flt.created_before is not None
        # A time range reads the (created_at, status) index; without one the status index.
        sql += " GROUP BY " + (self.UNINDEXED.format("status") if ranged else "status")
        async with self._connection() as conn:
            rows = await conn.rows(sql, params)
        return {ExecutionStatus(row[0]): int(row[1]) for row in rows}

    async def count_executions_over_time(
        self, flt: ExecutionFilter, origin: float, bucket: float, buckets: int
    ) -> dict[int, dict[ExecutionStatus, int]]:
        where, params = self._execution_filter(flt)
        where.append("created_at >= :origin AND created_at < :end")
        params.update(origin=origin, end=origin + bucket * buckets, bucket=bucket)
        index = self.FLOOR.format("(created_at - :origin) / :bucket")
        sql = (
            f"SELECT {index} AS k, status, COUNT(*) FROM executions"
            f" WHERE {' AND '.join(where)} GROUP BY k, status"
        )
        async with self._connection() as conn:
            rows = await conn.rows(sql, params)
        series: dict[int, dict[ExecutionStatus, int]] = {}
        for k, status, n in rows:
            if 0 <= int(k) < buckets:  # float edges: the last instant belongs to no bucket
                series.setdefault(int(k), {})[ExecutionStatus(status)] = int(n)
        return series

    def _execution_filter(self, flt: ExecutionFilter) -> tuple[list[str], dict[str, Any]]:
        """The WHERE terms and parameters of a filter, its cursor and limit aside."""
        where: list[str] = []
        params: dict[str, Any] = {}
        if flt.status:
            statuses, values = self._in_list("status", [s.value for s in flt.status])
            where.append(statuses)
            params.update(values)
        if flt.definition_name is not None:
            where.append("definition_id IN (SELECT id FROM definitions WHERE name = :dname)")
            params["dname"] = flt.definition_name
        if flt.definition_id is not None:
            where.append("definition_id = :did")
            params["did"] = flt.definition_id
        if flt.id_prefix is not None:  # substr, not LIKE: '%' and '_' are plain characters
            # The byte range [prefix, prefix with its last character raised) finds the rows
            # in the primary key's index instead of reading every row; substr keeps it exact.
            params["plen"], params["prefix"] = len(flt.id_prefix), flt.id_prefix
            params["prefix_end"] = _successor(flt.id_prefix)
            below = "" if params["prefix_end"] is None else f" AND id{self.BYTEWISE} < :prefix_end"
            where.append(f"id{self.BYTEWISE} >= :prefix{below} AND substr(id, 1, :plen) = :prefix")
        if flt.id_suffix is not None:
            # The same range on the id written backwards (migration 0013), whose index finds
            # the rows; a row written before that column existed has none, and is read too.
            params["slen"], params["suffix"] = len(flt.id_suffix), flt.id_suffix
            params["rsuffix"] = flt.id_suffix[::-1]
            params["rsuffix_end"] = _successor(params["rsuffix"])
            below = "" if params["rsuffix_end"] is None else " AND id_reversed < :rsuffix_end"
            where.append(
                f"(id_reversed >= :rsuffix{below} OR id_reversed IS NULL)"
                " AND substr(id, length(id) - :slen + 1) = :suffix"
            )
        if flt.created_after is not None:
            where.append("created_at > :after")
            params["after"] = flt.created_after
        if flt.created_before is not None:
            where.append("created_at < :before")
            params["before"] = flt.created_before
        if flt.trigger is not None:
            where.append(_TRIGGER_TERMS[flt.trigger].format(b=self.BYTEWISE))
        if flt.idempotency_keys is not None:
            where.append(keys_term(flt.idempotency_keys, params))
        return where, params

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(
                f"{_EXECUTIONS} WHERE status IN {UNFINISHED}"
                f" OR (status = '{ExecutionStatus.PENDING.value}' AND owner IS NOT NULL"
                f" AND correlation_id IS NOT NULL) ORDER BY created_at, id{self.BYTEWISE}"
            )
        return [execution_of(row) for row in rows]

    # ------------------------------------------------------------------ ownership leases

    async def claim_execution(
        self,
        execution_id: str,
        owner: str,
        lease_until: float,
        expected_owner: str | None,
        now: float,
    ) -> bool:
        # One conditional UPDATE is the compare-and-swap: the write lock (SQLite) or the row
        # lock (PostgreSQL) makes it atomic across processes; rowcount says if it held.
        sql = (
            "UPDATE executions SET owner = :owner, lease_until = :lease_until WHERE id = :id"
            f" AND (owner {self.SAME_AS} :expected OR lease_until < :now)"
        )
        params = {
            "owner": owner,
            "lease_until": lease_until,
            "id": execution_id,
            "expected": expected_owner,
            "now": now,
        }
        async with self._transaction() as tx:
            if await tx.run(sql, params) == 1:
                return True
            found = await tx.row("SELECT 1 FROM executions WHERE id = :id", {"id": execution_id})
        if found is None:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        return False

    async def claim_to_trigger(self, claim: TriggerClaim) -> bool:
        # One statement, no transaction around it: the compare-and-swap and the inputs are
        # one write (on SQLite one take of the file's write lock and one commit, not two).
        sql = (
            "UPDATE executions SET owner = :owner, lease_until = :lease_until, inputs = :i,"
            " overrides = :o, correlation_id = :c WHERE id = :id"
            f" AND (owner {self.SAME_AS} :expected OR lease_until < :now)"
        )
        params = {
            "owner": claim.owner,
            "lease_until": claim.lease_until,
            "id": claim.execution_id,
            "expected": claim.expected_owner,
            "now": claim.now,
            "i": dumps(claim.inputs),
            "o": dumps(claim.overrides),
            "c": claim.correlation_id,
        }
        return await self._update_if(sql, params)

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        if not execution_ids:
            return []  # no write lock for nothing
        async with self._transaction() as tx:
            held = await self._renew(tx, owner, lease_until, execution_ids)
        return [eid for eid in dict.fromkeys(execution_ids) if eid not in held]

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        if execution_ids is not None and not execution_ids:
            return  # an empty list releases nothing, unlike None
        async with self._transaction() as tx:
            if execution_ids is None:
                await tx.run(_RELEASE, {"owner": owner})
                return
            for chunk in self._chunks(execution_ids):
                ids, params = self._in_list("id", chunk)
                await tx.run(f"{_RELEASE} AND {ids}", {**params, "owner": owner})
