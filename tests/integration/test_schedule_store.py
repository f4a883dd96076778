"""The schedule side of every store adapter (memory, SQLite, PostgreSQL): a tick fires once."""

from __future__ import annotations

import asyncio

import pytest

from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import Store
from orchestrion.store.schedules import (
    FiringRecord,
    FiringStatus,
    ScheduleRecord,
    ScheduleState,
)

T0 = 1_700_000_000.0


def schedule(definition_id: str = "def-1", cursor: float | None = None) -> ScheduleRecord:
    return ScheduleRecord(
        id="report:nightly",
        definition_name="report",
        definition_id=definition_id,
        trigger="nightly",
        spec={"name": "nightly", "schedule": "0 2 * * *"},
        cursor=cursor,
        created_at=T0,
        updated_at=T0,
    )


def firing(tick: float) -> FiringRecord:
    return FiringRecord("report:nightly", tick, recorded_at=T0)


async def test_sync_keeps_state_and_a_new_version_brings_a_deleted_one_back(store: Store) -> None:
    assert (await store.sync_schedule(schedule())).state is ScheduleState.ACTIVE
    await store.set_schedule_state("report:nightly", ScheduleState.PAUSED, T0 + 1)
    again = await store.sync_schedule(schedule())
    assert again.state is ScheduleState.PAUSED and again.spec["schedule"] == "0 2 * * *"
    await store.set_schedule_state("report:nightly", ScheduleState.DELETED, T0 + 2)
    await store.sync_schedule(schedule())  # the same version: still deleted
    assert await store.list_schedules() == []
    with pytest.raises(ExecutionNotFound, match="report:nightly"):
        await store.get_schedule("report:nightly")
    with pytest.raises(ExecutionNotFound):
        await store.set_schedule_state("report:nightly", ScheduleState.ACTIVE, T0)
    back = await store.sync_schedule(schedule("def-2"))
    assert back.state is ScheduleState.ACTIVE and back.definition_id == "def-2"
    assert [s.id for s in await store.list_schedules()] == ["report:nightly"]


async def test_a_tick_is_recorded_once_and_the_cursor_only_moves_forward(store: Store) -> None:
    await store.sync_schedule(schedule())
    first = await store.record_firings("report:nightly", T0 + 120, [firing(T0 + 60)])
    assert [f.tick_at for f in first] == [T0 + 60]
    second = await store.record_firings(
        "report:nightly", T0 + 60, [firing(T0 + 60), firing(T0 + 120)]
    )
    assert [f.tick_at for f in second] == [T0 + 120]
    assert (await store.get_schedule("report:nightly")).cursor == T0 + 120
    pending = await store.pending_firings()
    assert [(f.tick_at, f.status) for f in pending] == [
        (T0 + 60, FiringStatus.PENDING),
        (T0 + 120, FiringStatus.PENDING),
    ]
    await store.settle_firing("report:nightly", T0 + 60, FiringStatus.STARTED, "exec-1")
    await store.settle_firing("report:nightly", T0 + 120, FiringStatus.SKIPPED, None)
    assert await store.pending_firings() == []
    listed = await store.list_firings("report:nightly")
    assert [(f.tick_at, f.execution_id) for f in listed] == [(T0 + 120, None), (T0 + 60, "exec-1")]


async def test_concurrent_recorders_insert_each_tick_once(store: Store) -> None:
    await store.sync_schedule(schedule())
    ticks = [T0 + i for i in range(20)]
    results = await asyncio.gather(
        *(
            store.record_firings("report:nightly", ticks[-1], [firing(t) for t in ticks])
            for _ in range(4)
        )
    )
    assert sorted(f.tick_at for batch in results for f in batch) == ticks


async def test_a_lease_has_one_holder_until_it_runs_out_or_is_released(store: Store) -> None:
    assert await store.claim_lease("scheduler", "a", T0 + 10, T0)
    assert not await store.claim_lease("scheduler", "b", T0 + 15, T0 + 5)
    assert await store.claim_lease("scheduler", "a", T0 + 20, T0 + 5)  # renewed
    assert not await store.claim_lease("scheduler", "b", T0 + 25, T0 + 15)
    assert await store.claim_lease("scheduler", "b", T0 + 31, T0 + 21)  # ran out: taken over
    assert not await store.claim_lease("scheduler", "a", T0 + 32, T0 + 22)
    await store.release_lease("scheduler", "a")  # not the holder: nothing changes
    assert not await store.claim_lease("scheduler", "a", T0 + 32, T0 + 22)
    await store.release_lease("scheduler", "b")
    assert await store.claim_lease("scheduler", "a", T0 + 33, T0 + 23)
