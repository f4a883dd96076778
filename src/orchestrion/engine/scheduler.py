"""``Scheduler``: fires the ticks of the stored schedules, once each, from one process at a time.

Every ``interval`` seconds a pass (1) takes or renews the scheduler lease (``leases`` table; a
process that dies stops renewing it and another takes over once it ran out, ``lease_seconds``
later), (2) records the due ticks of every active schedule with its new cursor, in one
transaction per schedule (``store/schedules.py``: a tick recorded twice is recorded once), and
(3) starts the pending firings, applying the overlap policy, each with the idempotency key of
its (schedule, tick), then marks them started. A crash anywhere leaves either a pending firing,
which the next pass starts, or an execution already made with that key, which the start finds.

The clock is injected, so tests drive ticks, catch-up and overlap without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Protocol

from pydantic import ValidationError

from orchestrion.core.states import FINAL_EXECUTION_STATES
from orchestrion.core.ticks import DEFAULT_GRACE, TickError, plan_ticks
from orchestrion.definition.schedules import Overlap, ScheduleSpec
from orchestrion.engine.schedule_sync import sync_all
from orchestrion.errors import (
    DefinitionError,
    ExecutionNotFound,
    IdempotencyConflict,
    OrchestrionError,
)
from orchestrion.store.schedules import (
    FiringRecord,
    FiringStatus,
    ScheduleRecord,
    ScheduleState,
    firing_key,
)

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["LEASE_NAME", "Clock", "Scheduler", "SystemClock"]

logger = logging.getLogger(__name__)

LEASE_NAME = "scheduler"
_SYNC_EVERY = 30.0  # seconds between looks for new definition versions (submits sync at once)
_FULL_SYNC_EVERY = 300.0  # seconds between syncs of every version again (heals a stray write)
_PENDING = 100  # most firings started per pass (about 100 starts a second at most)
_MAX_BACKLOG = 1000  # firings waiting to start past which new ticks are recorded as skipped


class Clock(Protocol):
    """What the scheduler asks of time (a test passes one it moves by hand)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """Wall-clock time."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Scheduler:
    """Runs schedule passes for ``engine`` while it holds the scheduler lease."""

    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock | None = None,
        interval: float = 1.0,
        lease_seconds: float = 10.0,
        grace: float = DEFAULT_GRACE,
    ) -> None:
        self.engine = engine
        self.clock = clock or SystemClock()
        self.interval = interval
        self.lease_seconds = lease_seconds
        self.grace = grace
        self.holding = False
        self._synced_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._broken: dict[str, str] = {}  # schedule id -> why it cannot fire (logged once)
        self._synced: set[str] = set()  # definition versions whose schedules are in the store
        self._full_synced_at: float | None = None
        self._shedding = False  # the backlog is full: new ticks are recorded as skipped

    # ------------------------------------------------------------------ running

    def start(self) -> None:
        """Run passes in the background until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="orchestrion-scheduler")

    async def stop(self) -> None:
        """Stop the passes and give the lease up, so another process takes over at once."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if self.holding:
            self.holding = False
            with contextlib.suppress(OrchestrionError):
                await self.engine.store.release_lease(LEASE_NAME, self.engine.owner)

    def wake(self) -> None:
        """Run the next pass now (a firing was just recorded)."""
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_pass()
            except asyncio.CancelledError:
                raise
            except Exception:  # a store that failed once: the next pass tries again
                logger.exception("scheduler pass failed")
            sleeping = asyncio.ensure_future(self.clock.sleep(self.interval))
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeping, woken}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeping.cancel()
                woken.cancel()
            self._wake.clear()

    async def run_pass(self) -> list[str]:
        """One pass; the ids of the executions it started (none without the lease)."""
        store, now = self.engine.store, self.clock.now()
        self.holding = await store.claim_lease(
            LEASE_NAME, self.engine.owner, now + self.lease_seconds, now
        )
        if not self.holding:
            return []
        if self._synced_at is None or now - self._synced_at >= _SYNC_EVERY:
            if self._full_synced_at is None or now - self._full_synced_at >= _FULL_SYNC_EVERY:
                self._synced.clear()
                self._full_synced_at = now
            await sync_all(store, now, self._synced)
            self._synced_at = now
        schedules = {record.id: record for record in await store.list_schedules()}
        for record in schedules.values():
            try:
                await self._record_due(record, now)
            except (TickError, ValidationError) as exc:
                # One schedule that cannot be read or computed (stored before its kind was
                # refused) must not stop the others: it is skipped, and said once.
                self._report_broken(record.id, exc)
        return await self._start_pending(schedules)

    def _report_backlog(self, full: bool) -> None:
        """Shed new ticks while the backlog bound of waiting firings is reached."""
        if full and not self._shedding:
            logger.warning(
                "%d schedule firings wait to start (ticks come faster than the %d a pass"
                " starts): new ticks are recorded as skipped until they drain",
                _MAX_BACKLOG, _PENDING,
            )  # fmt: skip
        elif self._shedding and not full:
            logger.warning("the schedule firings waiting to start drained: ticks fire again")
        self._shedding = full

    def _report_broken(self, schedule_id: str, exc: Exception) -> None:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if self._broken.get(schedule_id) != reason:
            self._broken[schedule_id] = reason
            logger.warning("schedule %s cannot fire: %s", schedule_id, reason)

    def _spec(self, record: ScheduleRecord) -> ScheduleSpec | None:
        try:
            return ScheduleSpec.model_validate(record.spec)
        except ValidationError as exc:
            self._report_broken(record.id, exc)
            return None

    # ------------------------------------------------------------------ the two steps

    async def _record_due(self, record: ScheduleRecord, now: float) -> None:
        store = self.engine.store
        if record.cursor is None:
            # New: ticks from its creation on are owed (catch-up applies to them too).
            record.cursor = min(record.created_at, now)
        spec = ScheduleSpec.model_validate(record.spec)
        plan = plan_ticks(record.id, spec, record.cursor, now, self.grace)
        if plan.cursor is None:
            return  # no tick since the last pass
        # Paused: the ticks pass without firing (they are not owed on resume).
        fire = [] if record.state is ScheduleState.PAUSED else plan.fire
        # Ticks coming faster than passes start them (many every-second schedules) would
        # pile up without end: past the backlog bound they are recorded as skipped.
        status = FiringStatus.SKIPPED if self._shedding else FiringStatus.PENDING
        firings = [FiringRecord(record.id, tick, status, recorded_at=now) for tick in fire]
        await store.record_firings(record.id, plan.cursor, firings)

    async def _start_pending(self, schedules: dict[str, ScheduleRecord]) -> list[str]:
        store = self.engine.store
        started: list[str] = []
        queued: set[str] = set()  # schedules whose next firing waits for a running one
        # Each schedule holds back at most one waiting firing (below): reading that many
        # more than the backlog bound means they never crowd the others out.
        limit = _MAX_BACKLOG + len(schedules)
        pending = await store.pending_firings(limit)
        self._report_backlog(len(pending) >= limit)
        for firing in pending:
            if len(started) >= _PENDING:
                break  # the rest start in the next passes, oldest first
            schedule = schedules.get(firing.schedule_id)
            if firing.schedule_id in queued:
                # One firing waits for the running execution; a later tick is not queued
                # behind it (a schedule every second behind an hour-long run would queue
                # 3600 starts): it is skipped, as Temporal's "buffer one" does.
                await store.settle_firing(
                    firing.schedule_id, firing.tick_at, FiringStatus.SKIPPED, None
                )
                continue
            if schedule is None or _recorded_before_pause(schedule, firing):
                # Deleted or paused since it was recorded (the pause or delete drops the
                # pending firings itself; this one was recorded by a pass running meanwhile).
                await store.settle_firing(
                    firing.schedule_id, firing.tick_at, FiringStatus.SKIPPED, None
                )
                continue
            spec = self._spec(schedule)
            if spec is None:  # broken: its firings are dropped rather than retried forever
                await store.settle_firing(
                    firing.schedule_id, firing.tick_at, FiringStatus.SKIPPED, None
                )
                continue
            running = (
                await self._running_before(firing) if spec.overlap is not Overlap.ALLOW else None
            )
            if running is not None:
                if spec.overlap is Overlap.QUEUE:
                    queued.add(firing.schedule_id)
                    continue
                if spec.overlap is Overlap.SKIP:
                    await store.settle_firing(
                        firing.schedule_id, firing.tick_at, FiringStatus.SKIPPED, None
                    )
                    continue
                await self._cancel(running, schedule.id)
            execution_id = await self._start(schedule, spec, firing)
            if execution_id is not None:
                started.append(execution_id)
        return started

    async def _running_before(self, firing: FiringRecord) -> str | None:
        """The execution of the schedule's newest earlier started tick, if it is not final
        (however many skipped or waiting ticks came after it)."""
        store = self.engine.store
        earlier = await store.newest_started_firing(firing.schedule_id, firing.tick_at)
        if earlier is None or earlier.execution_id is None:
            return None
        try:
            execution = await store.get_execution(earlier.execution_id)
        except ExecutionNotFound:  # purged: it finished long ago
            return None
        return None if execution.status in FINAL_EXECUTION_STATES else execution.id

    async def _cancel(self, execution_id: str, schedule_id: str) -> None:
        try:
            await self.engine.cancel(execution_id, f"schedule '{schedule_id}' started a newer tick")
        except OrchestrionError as exc:  # finished meanwhile: nothing to cancel
            logger.info("schedule %s: could not cancel %s: %s", schedule_id, execution_id, exc)

    async def _start(
        self, schedule: ScheduleRecord, spec: ScheduleSpec, firing: FiringRecord
    ) -> str | None:
        store = self.engine.store
        if not self.engine.accepting:
            return None  # shutting down: it stays pending for the next pass, here or elsewhere
        try:
            definition = await store.get_definition(schedule.definition_id)
            execution = await self.engine.start_execution(
                definition,
                dict(spec.inputs),
                idempotency_key=firing_key(firing.schedule_id, firing.tick_at),
            )
        except (DefinitionError, ExecutionNotFound, IdempotencyConflict) as exc:
            # Bad inputs, a definition gone, or its key already another workflow's: retrying
            # would fail again, so it is dropped.
            logger.warning("schedule %s: tick %s not started: %s", schedule.id, firing.tick_at, exc)
            await store.settle_firing(
                firing.schedule_id, firing.tick_at, FiringStatus.SKIPPED, None
            )
            return None
        await store.settle_firing(
            firing.schedule_id, firing.tick_at, FiringStatus.STARTED, execution.id
        )
        return execution.id


def _recorded_before_pause(schedule: ScheduleRecord, firing: FiringRecord) -> bool:
    """Whether ``firing`` was recorded before ``schedule`` was paused: it is not started (a
    trigger-now made since the pause is)."""
    return schedule.state is ScheduleState.PAUSED and firing.recorded_at < schedule.updated_at
