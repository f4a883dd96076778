"""The schedule side of ``MemoryStore`` (``store/schedules.py`` says what each method does)."""

from __future__ import annotations

from dataclasses import replace

from orchestrion.errors import ExecutionNotFound
from orchestrion.store.schedules import FiringRecord, FiringStatus, ScheduleRecord, ScheduleState

__all__ = ["MemorySchedules"]


class MemorySchedules:
    """Schedules, firings and leases in dicts; records are copied in and out, as a database
    would, so a caller's later change to one does not reach the store."""

    def __init__(self) -> None:
        self._schedules: dict[str, ScheduleRecord] = {}
        self._firings: dict[tuple[str, float], FiringRecord] = {}
        self._leases: dict[str, tuple[str, float]] = {}

    async def sync_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        stored = self._schedules.get(record.id)
        if stored is None:
            stored = replace(record)
        elif stored.definition_id != record.definition_id:
            revived = stored.state is ScheduleState.DELETED
            stored.definition_id, stored.spec = record.definition_id, dict(record.spec)
            stored.updated_at = record.updated_at
            stored.state = ScheduleState.ACTIVE if revived else stored.state
        self._schedules[record.id] = stored
        return replace(stored)

    def _schedule(self, schedule_id: str) -> ScheduleRecord:
        stored = self._schedules.get(schedule_id)
        if stored is None or stored.state is ScheduleState.DELETED:
            raise ExecutionNotFound(f"schedule '{schedule_id}' not found")
        return stored

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        return replace(self._schedule(schedule_id))

    async def list_schedules(self) -> list[ScheduleRecord]:
        return [
            replace(record)
            for _, record in sorted(self._schedules.items())
            if record.state is not ScheduleState.DELETED
        ]

    async def set_schedule_state(
        self, schedule_id: str, state: ScheduleState, now: float
    ) -> ScheduleRecord:
        stored = self._schedule(schedule_id)
        stored.state, stored.updated_at = state, now
        if state is not ScheduleState.ACTIVE:  # the ticks waiting to start are dropped
            for firing in self._firings.values():
                if firing.schedule_id == schedule_id and firing.status is FiringStatus.PENDING:
                    firing.status = FiringStatus.SKIPPED
        return replace(stored)

    async def record_firings(
        self, schedule_id: str, cursor: float | None, firings: list[FiringRecord]
    ) -> list[FiringRecord]:
        inserted = []
        for firing in firings:
            key = (firing.schedule_id, firing.tick_at)
            if key not in self._firings:
                self._firings[key] = replace(firing)
                inserted.append(replace(firing))
        stored = self._schedules.get(schedule_id)
        if stored is not None and cursor is not None:
            stored.cursor = cursor if stored.cursor is None else max(stored.cursor, cursor)
        return inserted

    async def pending_firings(self, limit: int = 100) -> list[FiringRecord]:
        pending = [f for f in self._firings.values() if f.status is FiringStatus.PENDING]
        pending.sort(key=lambda f: (f.tick_at, f.schedule_id))
        return [replace(f) for f in pending[:limit]]

    async def settle_firing(
        self, schedule_id: str, tick_at: float, status: FiringStatus, execution_id: str | None
    ) -> None:
        firing = self._firings.get((schedule_id, tick_at))
        if firing is not None:
            firing.status, firing.execution_id = status, execution_id

    async def list_firings(self, schedule_id: str, limit: int = 100) -> list[FiringRecord]:
        mine = [f for f in self._firings.values() if f.schedule_id == schedule_id]
        mine.sort(key=lambda f: f.tick_at, reverse=True)
        return [replace(f) for f in mine[:limit]]

    async def newest_started_firing(self, schedule_id: str, before: float) -> FiringRecord | None:
        started = [
            f
            for f in self._firings.values()
            if f.schedule_id == schedule_id
            and f.status is FiringStatus.STARTED
            and f.tick_at < before
        ]
        return replace(max(started, key=lambda f: f.tick_at)) if started else None

    async def claim_lease(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        held = self._leases.get(name)
        if held is not None and held[0] != owner and held[1] >= now:
            return False
        self._leases[name] = (owner, lease_until)
        return True

    async def release_lease(self, name: str, owner: str) -> None:
        held = self._leases.get(name)
        if held is not None and held[0] == owner:
            del self._leases[name]
