"""What the store keeps of schedules: the schedules, each tick fired, and the scheduler's lease.

A tick fires once because its firing is a row keyed by (schedule, tick): ``record_firings``
inserts the rows and moves the schedule's cursor in one transaction, and a row another process
inserted first is not returned. The execution a firing starts is created afterwards with an
idempotency key made of the same pair (``firing_key``), so a crash between the two loses
nothing: the next pass finds the firing pending and starts it, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from orchestrion.core.idempotency import bounded_key

__all__ = [
    "FiringRecord",
    "FiringStatus",
    "ForwardSchedules",
    "ScheduleRecord",
    "ScheduleState",
    "ScheduleStore",
    "firing_key",
]


class ScheduleState(StrEnum):
    """Whether a schedule fires."""

    ACTIVE = "active"
    PAUSED = "paused"  # ticks pass without firing until it is resumed (a queued one is dropped)
    DELETED = "deleted"  # gone until a new version of its definition declares it again


class FiringStatus(StrEnum):
    """Where the firing of one tick is."""

    PENDING = "pending"  # recorded, its execution not started yet
    STARTED = "started"
    SKIPPED = "skipped"  # the overlap policy, a pause or a delete dropped it


@dataclass(slots=True)
class ScheduleRecord:
    """One scheduled trigger of a definition (``id`` is ``<definition name>:<trigger name>``).

    ``spec`` is the trigger as validated (``definition/schedules.py``, JSON mode); ``cursor``
    the newest tick dealt with (None until the first pass: ticks before it are not owed).
    """

    id: str
    definition_name: str
    definition_id: str
    trigger: str
    spec: dict[str, Any]
    state: ScheduleState = ScheduleState.ACTIVE
    cursor: float | None = None
    created_at: float = 0.0
    updated_at: float = 0.0


@dataclass(slots=True)
class FiringRecord:
    """The firing of one tick of one schedule."""

    schedule_id: str
    tick_at: float
    status: FiringStatus = FiringStatus.PENDING
    execution_id: str | None = None
    recorded_at: float = 0.0


def firing_key(schedule_id: str, tick_at: float) -> str:
    """The idempotency key of the execution that the firing of this tick starts."""
    readable = f"{schedule_id}@{tick_at:.3f}"
    return bounded_key("schedule:", (schedule_id, f"{tick_at:.3f}"), readable)


class ScheduleStore(Protocol):
    """The schedule side of ``Store`` (``store/base.py``)."""

    async def sync_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        """Insert the schedule, or update the stored one to ``record``'s definition and spec.

        The state and cursor of a stored schedule are kept, except that a deleted one comes
        back (active) when a different definition version declares it. Returns what is stored.
        """

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        """Raises ``ExecutionNotFound`` when absent (deleted ones included)."""

    async def list_schedules(self) -> list[ScheduleRecord]:
        """Every schedule but the deleted ones, by id."""

    async def set_schedule_state(
        self, schedule_id: str, state: ScheduleState, now: float
    ) -> ScheduleRecord:
        """Pause, resume or delete. Raises ``ExecutionNotFound`` when absent.

        A pause or a delete also records the schedule's pending firings (ticks recorded but
        not started, such as one queued behind a running execution) as skipped, in the same
        transaction: no tick recorded before it starts after it."""

    async def record_firings(
        self, schedule_id: str, cursor: float | None, firings: list[FiringRecord]
    ) -> list[FiringRecord]:
        """Insert the firings not recorded yet and move the cursor forward to ``cursor`` (never
        back), atomically. Returns the firings this call inserted."""

    async def pending_firings(self, limit: int = 100) -> list[FiringRecord]:
        """Firings not started nor skipped yet, oldest tick first."""

    async def settle_firing(
        self, schedule_id: str, tick_at: float, status: FiringStatus, execution_id: str | None
    ) -> None:
        """Set the firing's status and the execution it started."""

    async def list_firings(self, schedule_id: str, limit: int = 100) -> list[FiringRecord]:
        """The schedule's firings, newest tick first."""

    async def newest_started_firing(self, schedule_id: str, before: float) -> FiringRecord | None:
        """The schedule's started firing with the newest tick before ``before``, if any."""

    async def claim_lease(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        """Take or renew the lease ``name`` until ``lease_until``: True when ``owner`` holds it
        (it held it already, nobody did, or the holder's ran out before ``now``)."""

    async def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up if ``owner`` holds it, so another process takes it at once."""


class ForwardSchedules:
    """``ScheduleStore`` handed over to ``forward_to()`` (for stores that wrap another)."""

    def forward_to(self) -> ScheduleStore:
        raise NotImplementedError

    async def sync_schedule(self, record: ScheduleRecord) -> ScheduleRecord:
        return await self.forward_to().sync_schedule(record)

    async def get_schedule(self, schedule_id: str) -> ScheduleRecord:
        return await self.forward_to().get_schedule(schedule_id)

    async def list_schedules(self) -> list[ScheduleRecord]:
        return await self.forward_to().list_schedules()

    async def set_schedule_state(
        self, schedule_id: str, state: ScheduleState, now: float
    ) -> ScheduleRecord:
        return await self.forward_to().set_schedule_state(schedule_id, state, now)

    async def record_firings(
        self, schedule_id: str, cursor: float | None, firings: list[FiringRecord]
    ) -> list[FiringRecord]:
        return await self.forward_to().record_firings(schedule_id, cursor, firings)

    async def pending_firings(self, limit: int = 100) -> list[FiringRecord]:
        return await self.forward_to().pending_firings(limit)

    async def settle_firing(
        self, schedule_id: str, tick_at: float, status: FiringStatus, execution_id: str | None
    ) -> None:
        await self.forward_to().settle_firing(schedule_id, tick_at, status, execution_id)

    async def list_firings(self, schedule_id: str, limit: int = 100) -> list[FiringRecord]:
        return await self.forward_to().list_firings(schedule_id, limit)

    async def newest_started_firing(self, schedule_id: str, before: float) -> FiringRecord | None:
        return await self.forward_to().newest_started_firing(schedule_id, before)

    async def claim_lease(self, name: str, owner: str, lease_until: float, now: float) -> bool:
        return await self.forward_to().claim_lease(name, owner, lease_until, now)

    async def release_lease(self, name: str, owner: str) -> None:
        await self.forward_to().release_lease(name, owner)
