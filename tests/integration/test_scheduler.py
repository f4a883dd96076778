"""The scheduler on a controllable clock: ticks fire once, catch-up and overlap policies, the
lease, and the verbs (pause, resume, trigger now, delete)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.engine.scheduler import Scheduler
from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import ExecutionFilter
from orchestrion.store.schedules import FiringRecord, FiringStatus, ScheduleState, firing_key

T0 = datetime(2030, 1, 1, tzinfo=UTC).timestamp()


class ManualClock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("passes are run by hand here")


def definition(
    trigger: dict[str, Any], *, waits: bool = False, name: str = "report"
) -> dict[str, Any]:
    node: dict[str, Any] = {"id": "a", "handler": "noop"}
    if waits:  # an execution that runs until someone decides
        node = {"id": "a", "handler": "approval", "config": {"message": "ok?"}}
    return {
        "name": name,
        "triggers": [{"type": "manual", "name": "by_hand"}, {"type": "scheduled", **trigger}],
        "dag": {"nodes": [node]},
    }


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    url = {
        "memory": lambda: "memory://",
        "sqlite": lambda: f"sqlite:///{tmp_path / 's.db'}",
        "postgres": lambda: str(request.getfixturevalue("postgres_url")),
    }[request.param]()
    async with Engine(url) as started:
        yield started


async def executions(engine: Engine) -> list[str]:
    page, _ = await engine.store.list_executions(ExecutionFilter(limit=500))
    return sorted(record.idempotency_key or "" for record in page)


async def ticks(engine: Engine, schedule_id: str = "report:every5") -> list[float]:
    firings = await engine.store.list_firings(schedule_id, 500)
    return sorted(f.tick_at for f in firings if f.status is FiringStatus.STARTED)


def minutes(values: list[float]) -> list[float]:
    return [(value - T0) / 60 for value in values]


async def submit_at(engine: Engine, spec: dict[str, Any], at: float) -> None:
    await engine.submit(spec)
    # The schedule was created "now" (wall clock): put it at the test's start instead.
    for record in await engine.store.list_schedules():
        await engine.store.record_firings(record.id, at, [])


async def test_each_tick_fires_once_however_many_passes(engine: Engine) -> None:
    clock = ManualClock(T0)
    await submit_at(engine, definition({"name": "every5", "schedule": "*/5 * * * *"}), T0)
    scheduler = Scheduler(engine, clock=clock)
    assert await scheduler.run_pass() == []
    clock.at = T0 + 301
    (first,) = await scheduler.run_pass()
    assert await scheduler.run_pass() == []  # the same tick again: nothing
    clock.at = T0 + 605
    (second,) = await scheduler.run_pass()
    assert first != second
    assert minutes(await ticks(engine)) == [5, 10]
    assert len(await executions(engine)) == 2
    assert (await engine.wait(second, timeout=10)).status is ExecutionStatus.COMPLETED


@pytest.mark.parametrize(
    ("catchup", "fired"),
    [("skip", [60]), ("latest", [55, 60]), ("all", [50, 55, 60])],
)
async def test_catch_up_after_downtime(engine: Engine, catchup: str, fired: list[float]) -> None:
    clock = ManualClock(T0 + 3600 + 10)
    trigger = {"name": "every5", "schedule": "*/5 * * * *", "catchup": catchup, "catchup_limit": 2}
    await submit_at(engine, definition(trigger), T0)
    await Scheduler(engine, clock=clock).run_pass()
    assert minutes(await ticks(engine)) == fired


@pytest.mark.parametrize(
    ("overlap", "started", "skipped"),
    [("allow", 2, 0), ("skip", 1, 1), ("queue", 1, 0), ("cancel_previous", 2, 0)],
)
async def test_overlap_with_a_run_still_going(
    engine: Engine, overlap: str, started: int, skipped: int
) -> None:
    clock = ManualClock(T0)
    trigger = {"name": "every5", "schedule": "*/5 * * * *", "overlap": overlap}
    await submit_at(engine, definition(trigger, waits=True), T0)
    scheduler = Scheduler(engine, clock=clock)
    clock.at = T0 + 301
    (first,) = await scheduler.run_pass()
    clock.at = T0 + 601
    await scheduler.run_pass()
    firings = await engine.store.list_firings("report:every5")
    statuses = [f.status for f in firings]
    assert statuses.count(FiringStatus.STARTED) == started
    assert statuses.count(FiringStatus.SKIPPED) == skipped
    if overlap == "queue":
        assert statuses.count(FiringStatus.PENDING) == 1
        await engine.cancel(first)
        await engine.settle(first, timeout=10)
        clock.at = T0 + 602
        assert len(await scheduler.run_pass()) == 1  # the queued tick, once the first ended
    if overlap == "cancel_previous":
        result = await engine.settle(first, timeout=10)
        assert result.status is ExecutionStatus.CANCELLED


async def test_paused_ticks_are_not_owed_and_trigger_now_fires_once(engine: Engine) -> None:
    clock = ManualClock(T0)
    await submit_at(engine, definition({"name": "every5", "schedule": "*/5 * * * *"}), T0)
    scheduler = Scheduler(engine, clock=clock)
    paused = await engine.schedules.pause("report:every5")
    assert paused.state is ScheduleState.PAUSED
    clock.at = T0 + 301
    assert await scheduler.run_pass() == []
    await engine.schedules.resume("report:every5")
    clock.at = T0 + 320
    assert await scheduler.run_pass() == []  # the tick at 5 passed while paused
    await engine.schedules.trigger_now("report:every5")
    assert len(await scheduler.run_pass()) == 1
    assert await scheduler.run_pass() == []
    await engine.schedules.delete("report:every5")
    assert await engine.schedules.all() == []
    with pytest.raises(ExecutionNotFound, match="report:every5"):
        await engine.schedules.trigger_now("report:every5")


async def test_a_new_version_replaces_the_schedules_of_the_old(engine: Engine) -> None:
    await engine.submit(definition({"name": "every5", "schedule": "*/5 * * * *"}))
    assert [s.id for s in await engine.schedules.all()] == ["report:every5"]
    await engine.submit(definition({"name": "hourly", "schedule": "0 * * * *"}))
    assert [s.id for s in await engine.schedules.all()] == ["report:hourly"]


async def test_one_scheduler_holds_the_lease_and_another_takes_over(engine: Engine) -> None:
    clock = ManualClock(T0)
    await submit_at(engine, definition({"name": "every5", "schedule": "*/5 * * * *"}), T0)
    first = Scheduler(engine, clock=clock, lease_seconds=10)
    second_owner = "another-process"  # another engine's owner id, acting on the store
    await first.run_pass()
    assert first.holding
    assert not await engine.store.claim_lease("scheduler", second_owner, T0 + 10, T0 + 1)
    clock.at = T0 + 301
    await first.run_pass()
    assert await engine.store.claim_lease("scheduler", second_owner, T0 + 400, T0 + 312)
    clock.at = T0 + 313
    assert await first.run_pass() == [] and not first.holding
    assert minutes(await ticks(engine)) == [5]


async def test_a_crash_after_recording_or_after_creating_loses_and_doubles_nothing(
    engine: Engine,
) -> None:
    clock = ManualClock(T0)
    await submit_at(engine, definition({"name": "every5", "schedule": "*/5 * * * *"}), T0)
    # A process recorded two ticks and died: one before creating its execution, one after.
    store = engine.store
    await store.record_firings(
        "report:every5",
        T0 + 600,
        [FiringRecord("report:every5", T0 + 300), FiringRecord("report:every5", T0 + 600)],
    )
    made = await engine.start_execution(
        await store.find_definition("report"),
        {},
        idempotency_key=firing_key("report:every5", T0 + 600),
    )
    clock.at = T0 + 610
    started = await Scheduler(engine, clock=clock).run_pass()
    assert made.id in started and len(started) == 2
    assert minutes(await ticks(engine)) == [5, 10]
    assert len(await executions(engine)) == 2
    assert await Scheduler(engine, clock=clock).run_pass() == []


async def test_a_tick_whose_inputs_are_refused_is_skipped_not_retried(engine: Engine) -> None:
    clock = ManualClock(T0)
    spec = definition({"name": "every5", "schedule": "*/5 * * * *"})
    spec["inputs"] = {"scope": {"type": "string", "required": True}}
    await submit_at(engine, spec, T0)
    clock.at = T0 + 301
    assert await Scheduler(engine, clock=clock).run_pass() == []
    (firing,) = await engine.store.list_firings("report:every5")
    assert firing.status is FiringStatus.SKIPPED and await executions(engine) == []


@pytest.mark.parametrize(
    "broken",
    [
        {"schedule": "0 0 30 2 *"},  # no such date
        {"schedule": "* * * * *", "start": 1e20},  # a time no calendar reaches
        {"schedule": "* * * * *", "overlap": "sometimes"},  # no longer a valid spec at all
    ],
)
async def test_a_schedule_that_cannot_fire_stops_no_other(
    engine: Engine, broken: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    from orchestrion.api.schedule_models import schedule_view
    from orchestrion.engine.schedules import upcoming_tick
    from orchestrion.store.schedules import ScheduleRecord

    clock = ManualClock(T0)
    every10s = {"name": "every10s", "schedule": "* * * * * */10"}
    await submit_at(engine, definition(every10s), T0)
    scheduler = Scheduler(engine, clock=clock)
    assert await scheduler.run_pass() == []
    # Stored by a process that still took it (its definition checks were looser then).
    report = await engine.store.find_definition("report")
    spec = {"type": "scheduled", "name": "broken", "timezone": "UTC", **broken}
    record = ScheduleRecord("report:broken", "report", report.id, "broken", spec, created_at=T0)
    await engine.store.sync_schedule(record)
    await engine.store.record_firings("report:broken", T0, [FiringRecord("report:broken", T0)])
    for at in (T0 + 10, T0 + 11, T0 + 20):  # within the 30 s between two syncs
        clock.at = at
        await scheduler.run_pass()
    assert await ticks(engine, "report:every10s") == [T0 + 10, T0 + 20]
    (firing,) = await engine.store.list_firings("report:broken")
    assert firing.status is FiringStatus.SKIPPED  # dropped, not retried at every pass
    stored = await engine.store.get_schedule("report:broken")
    assert upcoming_tick(stored, T0) is None
    view = schedule_view(stored, T0)  # what GET /v1/schedules shows: no 500
    assert view.next_tick_at is None and view.schedule == broken["schedule"]
    said = [r for r in caplog.records if "report:broken cannot fire" in r.getMessage()]
    assert len(said) == 1  # said once, not at every pass
    clock.at = T0 + 301  # the next full sync: its definition does not declare it, so it goes
    await scheduler.run_pass()
    with pytest.raises(ExecutionNotFound):
        await engine.store.get_schedule("report:broken")


@pytest.mark.parametrize("overlap", ["skip", "queue", "cancel_previous"])
async def test_the_overlap_policy_holds_however_many_ticks_pass(
    engine: Engine, overlap: str
) -> None:
    clock = ManualClock(T0)
    every = {"name": "each", "schedule": "* * * * * *", "overlap": overlap, "catchup": "all"}
    await submit_at(engine, definition(every, waits=True, name="held"), T0)
    scheduler = Scheduler(engine, clock=clock)
    await scheduler.run_pass()
    clock.at = T0 + 1
    (first,) = await scheduler.run_pass()  # it waits for a person from now on
    for second in range(2, 160, 20):  # more ticks than a page of firings
        clock.at = T0 + second
        await scheduler.run_pass()
    statuses = Counter(f.status for f in await engine.store.list_firings("held:each", 500))
    if overlap == "cancel_previous":  # each tick cancels the one before and starts
        assert set(statuses) == {FiringStatus.STARTED}
        return
    assert statuses[FiringStatus.STARTED] == 1  # never a second one beside the first
    # queue: one tick waits for the first to end, the ticks after it are dropped.
    assert statuses[FiringStatus.PENDING] == (1 if overlap == "queue" else 0)
    # Another schedule's ticks are not held up behind them.
    await submit_at(engine, definition({"name": "every5", "schedule": "* * * * * */5"}), T0 + 160)
    clock.at = T0 + 165
    assert len(await scheduler.run_pass()) == 1
    assert await ticks(engine, "report:every5") == [T0 + 165]
    if overlap == "queue":
        await engine.cancel(first)
        await engine.settle(first, timeout=10)
        clock.at = T0 + 166
        assert len(await scheduler.run_pass()) == 1  # the one that waited; this tick waits now
        after = Counter(f.status for f in await engine.store.list_firings("held:each", 500))
        assert (after[FiringStatus.STARTED], after[FiringStatus.PENDING]) == (2, 1)


async def test_ticks_faster_than_passes_start_them_are_bounded(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrion.engine import scheduler as module

    # 20 every-second schedules, 5 starts a pass, a backlog bound of 10 waiting firings.
    monkeypatch.setattr(module, "_PENDING", 5)
    monkeypatch.setattr(module, "_MAX_BACKLOG", 10)
    triggers = [
        {"type": "scheduled", "name": f"t{i}", "schedule": "* * * * * *"} for i in range(20)
    ]
    spec = {
        "name": "flood",
        "triggers": triggers,
        "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
    }
    await submit_at(engine, spec, T0)
    clock = ManualClock(T0)
    scheduler = Scheduler(engine, clock=clock)
    await scheduler.run_pass()
    waiting = []
    for second in range(1, 9):
        clock.at = T0 + second
        assert len(await scheduler.run_pass()) <= 5
        waiting.append(len(await engine.store.pending_firings(10_000)))
    # Never more than the bound, the schedules and one pass of ticks wait.
    assert max(waiting) <= 10 + 20 + 20
    assert waiting[-1] < max(waiting)  # shedding new ticks lets the backlog drain


async def test_a_pause_drops_the_tick_queued_behind_a_running_execution(
    engine: Engine,
) -> None:
    clock = ManualClock(T0)
    trigger = {"name": "every5", "schedule": "*/5 * * * *", "overlap": "queue"}
    await submit_at(engine, definition(trigger, waits=True), T0)
    scheduler = Scheduler(engine, clock=clock)
    clock.at = T0 + 301
    (first,) = await scheduler.run_pass()
    clock.at = T0 + 601
    assert await scheduler.run_pass() == []  # the tick at 10 waits for the first run
    queued = [f for f in await engine.store.list_firings("report:every5") if f.tick_at > T0 + 400]
    assert [f.status for f in queued] == [FiringStatus.PENDING]
    await engine.schedules.pause("report:every5")
    firings = await engine.schedules.firings("report:every5")
    assert [f.status for f in firings] == [FiringStatus.SKIPPED, FiringStatus.STARTED]
    await engine.cancel(first)
    await engine.settle(first, timeout=10)
    clock.at = T0 + 602
    assert await scheduler.run_pass() == []  # paused: the queued tick does not start
    await engine.schedules.resume("report:every5")
    clock.at = T0 + 603
    assert await scheduler.run_pass() == []  # nor once resumed: it was dropped
    assert minutes(await ticks(engine)) == [5]


async def test_a_trigger_now_while_paused_fires_and_a_stale_firing_does_not(
    engine: Engine,
) -> None:
    clock = ManualClock(T0)
    await submit_at(engine, definition({"name": "every5", "schedule": "*/5 * * * *"}), T0)
    scheduler = Scheduler(engine, clock=clock)
    await engine.schedules.pause("report:every5")
    paused = await engine.schedules.get("report:every5")
    # A pass that read the schedule before the pause records its tick after it.
    stale = FiringRecord("report:every5", T0 + 300, recorded_at=paused.updated_at - 1)
    await engine.store.record_firings("report:every5", None, [stale])
    fired = await engine.schedules.trigger_now("report:every5")
    clock.at = T0 + 301
    (started,) = await scheduler.run_pass()
    firings = {f.tick_at: f for f in await engine.schedules.firings("report:every5")}
    assert firings[fired.tick_at].execution_id == started
    assert firings[T0 + 300].status is FiringStatus.SKIPPED


async def test_no_last_tick_before_the_first_nor_before_the_window_opens(
    engine: Engine,
) -> None:
    from orchestrion.api.schedule_models import schedule_view
    from orchestrion.engine.schedules import last_tick

    clock = ManualClock(T0)
    trigger = {"name": "every5", "schedule": "*/5 * * * *", "start": T0 + 86400}
    await submit_at(engine, definition(trigger), T0)
    scheduler = Scheduler(engine, clock=clock)
    clock.at = T0 + 601
    assert await scheduler.run_pass() == []  # ticks before its start pass without firing
    record = await engine.schedules.get("report:every5")
    assert record.cursor is not None and record.cursor < T0 + 86400
    assert last_tick(record) is None
    assert schedule_view(record, clock.at).last_tick_at is None
    clock.at = T0 + 86400 + 1
    assert len(await scheduler.run_pass()) == 1
    record = await engine.schedules.get("report:every5")
    assert last_tick(record) == T0 + 86400
    assert schedule_view(record, clock.at).last_tick_at == datetime.fromtimestamp(T0 + 86400, UTC)


async def test_schedule_list_json_gives_no_last_tick_before_the_window_opens(
    tmp_path: Path,
) -> None:
    import asyncio
    import json

    from typer.testing import CliRunner

    from orchestrion.cli.app import app as cli

    db = tmp_path / "s.db"
    start = datetime(2027, 1, 1, tzinfo=UTC).timestamp()
    trigger = {"name": "every5", "schedule": "*/5 * * * *", "start": start}
    async with Engine(f"sqlite:///{db}") as engine:
        await engine.submit(definition(trigger))
        await Scheduler(engine, clock=ManualClock(start - 3600)).run_pass()
        stored = await engine.schedules.get("report:every5")
        assert stored.cursor is not None  # the cursor passed cron times before the start
    listed = await asyncio.to_thread(
        CliRunner().invoke, cli, ["schedule", "list", "--db", str(db), "--json"]
    )
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["id"] == "report:every5" and row["last_tick_at"] is None
    assert row["next_tick_at"] == start
