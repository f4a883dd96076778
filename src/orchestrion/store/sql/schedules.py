"""The schedule side of ``SQLStore``: schedules, firings and named leases, written once for
every dialect (``store/schedules.py`` says what each method does).

A tick fires once because ``schedule_firings`` is keyed by (schedule, tick): the insert that
records it does nothing for a row another process recorded first, and that conflict is how
the caller learns it was not first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from orchestrion.errors import ExecutionNotFound
from orchestrion.store.schedules import FiringRecord, FiringStatus, ScheduleRecord, ScheduleState
from orchestrion.store.sql.driver import C, SQLDriver
from orchestrion.store.sql.rows import dumps, marks

__all__ = ["SQLSchedules"]

_SCHEDULE_COLS = (
    "id, definition_name, definition_id, trigger_name, spec, state, cursor_at, created_at,"
    " updated_at"
)
_FIRING_COLS = "schedule_id, tick_at, status, execution_id, recorded_at"
_DELETED = ScheduleState.DELETED.value

# A new definition version updates the schedule (and brings a deleted one back); the same
# version, synced again by every process at start, changes nothing.
_SYNC = (
    f"INSERT INTO schedules ({_SCHEDULE_COLS}) VALUES ({marks(_SCHEDULE_COLS)})"
    " ON CONFLICT (id) DO UPDATE SET definition_id = excluded.definition_id,"
    " spec = excluded.spec, updated_at = excluded.updated_at,"
    f" state = CASE WHEN schedules.state = '{_DELETED}' THEN 'active' ELSE schedules.state END"
    " WHERE schedules.definition_id <> excluded.definition_id"
)
_SCHEDULES = f"SELECT {_SCHEDULE_COLS} FROM schedules"
_INSERT_FIRING = (
    f"INSERT INTO schedule_firings ({_FIRING_COLS}) VALUES ({marks(_FIRING_COLS)})"
    " ON CONFLICT (schedule_id, tick_at) DO NOTHING"
)
_ADVANCE = (
    "UPDATE schedules SET cursor_at = :c WHERE id = :id AND (cursor_at IS NULL OR cursor_at < :c)"
)
_FIRINGS = f"SELECT {_FIRING_COLS} FROM schedule_firings"
# Taken when free, run out, or held already by the same owner: one conditional upsert, atomic
# under the write lock (SQLite) or the row lock (PostgreSQL); the row count says if it held.
_CLAIM = (
    "INSERT INTO leases (name, owner, lease_until) VALUES (:name, :owner, :until)"
    " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, lease_until = excluded.lease_until"
    " WHERE leases.owner = excluded.owner OR leases.lease_until < :now"
)


def _schedule_params(record: ScheduleRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "definition_name": record.definition_name,
        "definition_id": record.definition_id,
        "trigger_name": record.trigger,
        "spec": dumps(record.spec),
        "state": record.state.value,
        "cursor_at": record.cursor,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _schedule_of(row: Sequence[Any]) -> ScheduleRecord:
    return ScheduleRecord(
        id=row[0],
        definition_name=row[1],
        definition_id=row[2],
        trigger=row[3],
        spec=json.loads(row[4]),
        state=ScheduleState(row[5]),
        cursor=row[6],
        created_at=row[7],
        updated_at=row[8],
    )


def _firing_of(row: Sequence[Any]) -> FiringRecord:
    return FiringRecord(
        schedule_id=row[0],
        tick_at=row[1],
        status=FiringStatus(row[2]),
        execution_id=row[3],
        recorded_at=row[4],
    )


class SQLSchedules(SQLDriver[C]):
    """Schedules, firings and leases of a SQL store."""

    async def sync_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        async with self._transaction() as tx:
            await tx.run(_SYNC, _schedule_params(record))
            row = await tx.row(f"{_SCHEDULES} WHERE id = :id", {"id": record.id})
        assert row is not None  # inserted or met just now
        return _schedule_of(row)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        async with self._connection() as conn:
            row = await conn.row(
                f"{_SCHEDULES} WHERE id = :id AND state <> '{_DELETED}'", {"id": schedule_id}
            )
        if row is None:
            raise ExecutionNotFound(f"schedule '{schedule_id}' not found")
        return _schedule_of(row)

    async def list_schedules(self) -> list[ScheduleRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(
                f"{_SCHEDULES} WHERE state <> '{_DELETED}' ORDER BY id{self.BYTEWISE}"
            )
        return [_schedule_of(row) for row in rows]

    async def set_schedule_state(
        self, schedule_id: str, state: ScheduleState, now: float
    ) -> ScheduleRecord:
        async with self._transaction() as tx:
            changed = await tx.run(
                "UPDATE schedules SET state = :s, updated_at = :now"
                f" WHERE id = :id AND state <> '{_DELETED}'",
                {"s": state.value, "now": now, "id": schedule_id},
            )
            if changed and state is not ScheduleState.ACTIVE:
                # A tick recorded but not started yet (one queued behind a running
                # execution) is dropped with the pause or the delete, not started after it.
                await tx.run(
                    "UPDATE schedule_firings SET status = :skipped"
                    " WHERE schedule_id = :id AND status = :pending",
                    {
                        "skipped": FiringStatus.SKIPPED.value,
                        "pending": FiringStatus.PENDING.value,
                        "id": schedule_id,
                    },
                )
            row = await tx.row(f"{_SCHEDULES} WHERE id = :id", {"id": schedule_id})
        if not changed or row is None:
            raise ExecutionNotFound(f"schedule '{schedule_id}' not found")
        return _schedule_of(row)

    async def record_firings(
        self, schedule_id: str, cursor: float | None, firings: list[FiringRecord]
    ) -> list[FiringRecord]:
        inserted = []
        async with self._transaction() as tx:
            for firing in firings:
                params = {
                    "schedule_id": firing.schedule_id,
                    "tick_at": firing.tick_at,
                    "status": firing.status.value,
                    "execution_id": firing.execution_id,
                    "recorded_at": firing.recorded_at,
                }
                if await tx.run(_INSERT_FIRING, params) == 1:
                    inserted.append(firing)
            if cursor is not None:
                await tx.run(_ADVANCE, {"c": cursor, "id": schedule_id})
        return inserted

    async def pending_firings(self, limit: int = 100) -> list[FiringRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(
                f"{_FIRINGS} WHERE status = :s ORDER BY tick_at, schedule_id LIMIT :limit",
                {"s": FiringStatus.PENDING.value, "limit": limit},
            )
        return [_firing_of(row) for row in rows]

    async def settle_firing(
        self, schedule_id: str, tick_at: float, status: FiringStatus, execution_id: str | None
    ) -> None:
        async with self._transaction() as tx:
            await tx.run(
                "UPDATE schedule_firings SET status = :s, execution_id = :e"
                " WHERE schedule_id = :id AND tick_at = :t",
                {"s": status.value, "e": execution_id, "id": schedule_id, "t": tick_at},
            )

    async def list_firings(self, schedule_id: str, limit: int = 100) -> list[FiringRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(
                f"{_FIRINGS} WHERE schedule_id = :id ORDER BY tick_at DESC LIMIT :limit",
                {"id": schedule_id, "limit": limit},
            )
        return [_firing_of(row) for row in rows]

    async def newest_started_firing(self, schedule_id: str, before: float) -> FiringRecord | None:
        async with self._connection() as conn:
            row = await conn.row(
                f"{_FIRINGS} WHERE schedule_id = :id AND status = :s AND tick_at < :t"
                " ORDER BY tick_at DESC LIMIT 1",
                {"id": schedule_id, "s": FiringStatus.STARTED.value, "t": before},
            )
        return None if row is None else _firing_of(row)

    async def claim_lease(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        params = {"name": name, "owner": owner, "until": lease_until, "now": now}
        async with self._transaction() as tx:
            return await tx.run(_CLAIM, params) == 1

    async def release_lease(self, name: str, owner: str) -> None:
        async with self._transaction() as tx:
            await tx.run(
                "DELETE FROM leases WHERE name = :name AND owner = :owner",
                {"name": name, "owner": owner},
            )
