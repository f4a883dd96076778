"""``ScheduleVerbs``: what users do with schedules (list, pause, resume, trigger now, delete),
and the process's own ``Scheduler`` when it runs one (``orchestrion serve``, orchestrators).

Every verb acts on the store, so any process on the database may use it: a pause is seen by
the next pass of whichever process holds the scheduler lease, and a trigger-now is a firing
recorded as pending, which that pass starts (at once when the scheduler is this process's).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydantic import ValidationError

from orchestrion.engine.schedule_sync import sync_definition
from orchestrion.store.base import DefinitionRecord
from orchestrion.store.schedules import FiringRecord, ScheduleRecord, ScheduleState

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.engine.scheduler import Clock, Scheduler

# The scheduler, the tick arithmetic (core/ticks.py) and the schedule model are imported by
# the verbs that use them: an engine that runs no scheduler, as ``orchestrion run`` and the
# Python API's, does not load them at start.

__all__ = ["ScheduleVerbs", "last_tick", "start_scheduler", "upcoming_tick"]


class ScheduleVerbs:
    """The schedule verbs of one engine (``engine.schedules``)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self.scheduler: Scheduler | None = None

    # ------------------------------------------------------------------ the process's scheduler

    def start_scheduler(
        self,
        *,
        clock: Clock | None = None,
        interval: float = 1.0,
        lease_seconds: float = 10.0,
    ) -> Scheduler:
        """Run a scheduler in this process (it fires ticks while it holds the lease)."""
        if self.scheduler is None:
            from orchestrion.engine.scheduler import Scheduler

            self.scheduler = Scheduler(
                self._engine, clock=clock, interval=interval, lease_seconds=lease_seconds
            )
            self.scheduler.start()
        return self.scheduler

    async def stop_scheduler(self) -> None:
        scheduler, self.scheduler = self.scheduler, None
        if scheduler is not None:
            await scheduler.stop()

    async def definition_stored(self, definition: DefinitionRecord) -> None:
        """Take a newly stored definition's scheduled triggers in at once."""
        await sync_definition(self._engine.store, definition, time.time())

    # ------------------------------------------------------------------ verbs

    async def all(self) -> list[ScheduleRecord]:
        """Every schedule (deleted ones aside), by id."""
        return await self._engine.store.list_schedules()

    async def get(self, schedule_id: str) -> ScheduleRecord:
        """Raises ``ExecutionNotFound`` when there is no such schedule."""
        return await self._engine.store.get_schedule(schedule_id)

    async def firings(self, schedule_id: str, limit: int = 20) -> list[FiringRecord]:
        """The schedule's newest firings, newest first."""
        await self.get(schedule_id)
        return await self._engine.store.list_firings(schedule_id, limit)

    async def pause(self, schedule_id: str) -> ScheduleRecord:
        """Stop firing; ticks that pass while paused are not owed on resume, and a tick
        recorded but not started yet (queued behind a running execution) is dropped."""
        return await self._set(schedule_id, ScheduleState.PAUSED)

    async def resume(self, schedule_id: str) -> ScheduleRecord:
        return await self._set(schedule_id, ScheduleState.ACTIVE)

    async def delete(self, schedule_id: str) -> ScheduleRecord:
        """Remove the schedule until a new version of its definition declares it again."""
        return await self._set(schedule_id, ScheduleState.DELETED)

    async def trigger_now(self, schedule_id: str) -> FiringRecord:
        """Fire once now, whatever the cron expression says (the overlap policy applies)."""
        await self.get(schedule_id)
        now = time.time()
        # Recorded at the unrounded time: a trigger-now just after a pause is later than it,
        # and fires (the scheduler drops what was recorded before a pause).
        firing = FiringRecord(schedule_id, round(now, 3), recorded_at=now)
        await self._engine.store.record_firings(schedule_id, None, [firing])
        if self.scheduler is not None:
            self.scheduler.wake()
        return firing

    async def _set(self, schedule_id: str, state: ScheduleState) -> ScheduleRecord:
        return await self._engine.store.set_schedule_state(schedule_id, state, time.time())


def start_scheduler(engine: Engine) -> Scheduler:
    """Run ``engine``'s scheduler with the intervals of its settings."""
    settings = engine.settings
    return engine.schedules.start_scheduler(
        interval=settings.scheduler_interval, lease_seconds=settings.scheduler_lease_seconds
    )


def upcoming_tick(record: ScheduleRecord, now: float) -> float | None:
    """The next tick ``record`` fires: None when it is not active, its window ended, or it
    cannot fire at all (a schedule stored before its kind was refused)."""
    from orchestrion.core.ticks import TickError, next_tick
    from orchestrion.definition.schedules import ScheduleSpec

    if record.state is not ScheduleState.ACTIVE:
        return None
    try:
        spec = ScheduleSpec.model_validate(record.spec)
        return next_tick(spec, max(now, record.cursor or now))
    except (TickError, ValidationError):
        return None


def last_tick(record: ScheduleRecord) -> float | None:
    """The newest tick ``record`` dealt with (fired, or passed while paused): None before its
    first, and while its window has not opened (the cursor then passes cron times before
    ``start``, which are no ticks of the schedule)."""
    cursor, start = record.cursor, record.spec.get("start")
    if cursor is None or (isinstance(start, int | float) and cursor < start):
        return None
    return cursor
