"""Scheduled triggers: their validation (with lines) and which ticks a pass fires."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from orchestrion import load_definition
from orchestrion.core.ticks import TickError, jitter_of, next_tick, plan_ticks
from orchestrion.definition.schedules import ScheduleSpec, scheduled_triggers
from orchestrion.errors import DefinitionError

T0 = datetime(2027, 1, 1, tzinfo=UTC).timestamp()

DEFINITION = """\
workflow:
  id: report
  name: report
  triggers:
    - type: manual
      name: by_hand
    - type: scheduled
      name: quarterly_review
{trigger}
  tasks:
    - id: a
      agent: noop
"""


def _load(trigger: str) -> list[ScheduleSpec]:
    return scheduled_triggers(load_definition(DEFINITION.format(trigger=trigger)).spec.triggers)


def test_a_scheduled_trigger_is_read_with_its_policies() -> None:
    (spec,) = _load(
        '      schedule: "0 0 1 */3 *"\n      timezone: Europe/Paris\n'
        "      catchup: all\n      catchup_limit: 5\n      overlap: skip\n"
        "      jitter: 30s\n      inputs: {scope: full}\n"
        '      start: "2027-01-01T00:00:00"'
    )
    assert spec.name == "quarterly_review"
    assert (spec.catchup, spec.catchup_limit, spec.overlap) == ("all", 5, "skip")
    assert spec.jitter == 30 and spec.inputs == {"scope": "full"}
    # A start without an offset is a wall-clock time in the schedule's zone.
    assert spec.start == datetime(2026, 12, 31, 23, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("trigger", "line", "words"),
    [
        ('      schedule: "61 * * * *"', 9, "invalid cron expression '61 * * * *'"),
        ('      schedule: "* * *"', 9, "must have 5 fields"),
        ('      schedule: "* * * * *"\n      timezone: Mars/Base', 10, "unknown time zone"),
        ('      schedule: "* * * * *"\n      overlap: sometimes', 10, "'cancel_previous'"),
        ('      schedule: "* * * * *"\n      catchup: never', 10, "'latest'"),
        ('      schedule: "* * * * *"\n      cron: "x"', 10, "unknown key 'cron'"),
        ("      timezone: UTC", 7, "missing required key 'schedule'"),
        # Parse, but no calendar has the date: they would never fire.
        ('      schedule: "0 0 30 2 *"', 9, "never fires"),
        ('      schedule: "0 0 31 4 *"', 9, "never fires"),
        ('      schedule: "0 0 31 2 * *"', 9, "never fires"),
        ('      schedule: "0 0 1 1 1#5"', 9, "never fires"),
        # Random values: each process and pass would read other ticks.
        ('      schedule: "R * * * *"', 9, "random values"),
        ('      schedule: "0 r * * *"', 9, "random values"),
        ('      schedule: "0 0 1,R(2-5) * *"', 9, "random values"),
        ('      schedule: "* * * * * R"', 9, "random values"),
        ('      schedule: "@every 0"', 9, "the macros are @yearly, @annually, @monthly"),
        ('      schedule: "@reboot"', 9, "the macros are @yearly"),
        ('      schedule: "*/0 * * * *"', 9, "invalid cron expression"),
        # Times with no tick: before 1970, after the year 3000 (inf and nan: not JSON numbers).
        ('      schedule: "* * * * *"\n      start: 1.0e+20', 10, "less than or equal"),
        ('      schedule: "* * * * *"\n      end: -5', 10, "greater than or equal"),
        ('      schedule: "* * * * *"\n      start: "9999-12-31T23:59:59"', 10, "less than"),
        ('      schedule: "* * * * *"\n      end: "0001-01-01T00:00:00"', 10, "greater than"),
    ],
)
def test_a_bad_schedule_is_refused_with_its_line(trigger: str, line: int, words: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition(DEFINITION.format(trigger=trigger))
    (issue,) = caught.value.issues
    assert issue.line == line
    assert words in issue.message
    assert issue.field is not None and issue.field.startswith("workflow.triggers[1]")


@pytest.mark.parametrize(
    "schedule",
    ["0 0 29 2 *", "0 0 L 2 *", "0 0 * 2 1#5", "30 8 * MAR-APR FRI", "0 0 1W * *"],
)
def test_rare_but_real_dates_and_month_or_day_names_load(schedule: str) -> None:
    (spec,) = _load(f'      schedule: "{schedule}"')
    assert next_tick(spec, T0) is not None


@pytest.mark.parametrize(
    ("macro", "fields", "first"),
    [
        ("@hourly", "0 * * * *", datetime(2027, 1, 1, 1, tzinfo=UTC)),
        ("@daily", "0 0 * * *", datetime(2027, 1, 2, tzinfo=UTC)),
        ("@midnight", "0 0 * * *", datetime(2027, 1, 2, tzinfo=UTC)),
        ("@weekly", "0 0 * * 0", datetime(2027, 1, 3, tzinfo=UTC)),
        ("@monthly", "0 0 1 * *", datetime(2027, 2, 1, tzinfo=UTC)),
        ("@yearly", "0 0 1 1 *", datetime(2028, 1, 1, tzinfo=UTC)),
        ("@ANNUALLY", "0 0 1 1 *", datetime(2028, 1, 1, tzinfo=UTC)),
    ],
)
def test_cron_macros_stand_for_their_fields(macro: str, fields: str, first: datetime) -> None:
    (spec,) = _load(f'      schedule: "{macro}"')
    assert spec.schedule == fields
    assert next_tick(spec, T0) == first.timestamp()


def test_a_schedule_that_cannot_tick_raises_tick_error_not_a_crash() -> None:
    # A spec made without validation, as one stored before its kind was refused may be.
    never = ScheduleSpec.model_construct(name="s", schedule="0 0 30 2 *", timezone="UTC")
    far = ScheduleSpec.model_construct(
        name="s", schedule="* * * * *", timezone="UTC", start=1e20, end=None
    )
    for broken in (never, far):
        with pytest.raises(TickError):
            next_tick(broken, T0)
    with pytest.raises(TickError):
        plan_ticks("s", never, T0 - 600, T0)


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 1e20, -1.0])
def test_a_start_or_end_with_no_tick_is_refused_in_every_form(value: float) -> None:
    for key in ("start", "end"):
        with pytest.raises(ValueError, match=key):
            ScheduleSpec.model_validate({"name": "s", "schedule": "* * * * *", key: value})


def test_a_schedule_name_given_twice_is_refused() -> None:
    trigger = '      schedule: "* * * * *"\n    - type: scheduled\n      name: quarterly_review\n'
    with pytest.raises(DefinitionError, match="used twice"):
        load_definition(DEFINITION.format(trigger=trigger + '      schedule: "0 * * * *"'))


def _spec(**fields: object) -> ScheduleSpec:
    return ScheduleSpec.model_validate({"name": "s", "schedule": "*/5 * * * *", **fields})


def _minutes(ticks: list[float]) -> list[float]:
    return [(tick - T0) / 60 for tick in ticks]


def test_on_time_ticks_fire_once_and_the_cursor_moves_past_them() -> None:
    plan = plan_ticks("s", _spec(), T0, T0 + 5 * 60 + 2)
    assert _minutes(plan.fire) == [5]
    assert plan.cursor == T0 + 300
    again = plan_ticks("s", _spec(), plan.cursor, T0 + 5 * 60 + 30)
    assert again.fire == [] and again.cursor is None
    # Late by less than the grace: on time, whichever the catch-up policy.
    late = plan_ticks("s", _spec(), T0 + 300, T0 + 10 * 60 + 50)
    assert _minutes(late.fire) == [10]


@pytest.mark.parametrize(
    ("catchup", "fired"),
    [("skip", [60]), ("latest", [55, 60]), ("all", [45, 50, 55, 60])],
)
def test_catch_up_after_an_hour_down(catchup: str, fired: list[float]) -> None:
    spec = _spec(catchup=catchup, catchup_limit=3)
    plan = plan_ticks("s", spec, T0, T0 + 3600 + 10)
    assert _minutes(plan.fire) == fired
    assert plan.cursor == T0 + 3600


def test_a_year_down_costs_no_more_than_the_limit() -> None:
    spec = _spec(schedule="* * * * * *", catchup="all", catchup_limit=2)
    plan = plan_ticks("s", spec, T0, T0 + 365 * 86400, grace=0)
    assert [t - T0 for t in plan.fire] == [365 * 86400 - 2, 365 * 86400 - 1, 365 * 86400]


def test_every_second_with_seconds_last() -> None:
    plan = plan_ticks("s", _spec(schedule="* * * * * *"), T0, T0 + 3.5)
    assert [t - T0 for t in plan.fire] == [1, 2, 3]


def test_the_window_bounds_the_ticks() -> None:
    spec = _spec(start=T0 + 600, end=T0 + 1200)
    assert _minutes(plan_ticks("s", spec, T0, T0 + 1800, grace=3600).fire) == [10, 15, 20]
    assert next_tick(spec, T0) == T0 + 600
    assert next_tick(spec, T0 + 1200) is None


def test_jitter_delays_a_tick_by_the_same_amount_everywhere() -> None:
    spec = _spec(jitter=120)
    delay = jitter_of("s", T0 + 300, 120)
    assert 0 <= delay < 120 and delay == jitter_of("s", T0 + 300, 120)
    assert plan_ticks("s", spec, T0, T0 + 300 + delay - 0.01).fire == []
    assert plan_ticks("s", spec, T0, T0 + 300 + delay + 0.01).fire == [T0 + 300]


def test_the_time_zone_moves_the_ticks() -> None:
    spec = _spec(schedule="0 9 * * *", timezone="America/New_York")
    assert datetime.fromtimestamp(next_tick(spec, T0) or 0, UTC).hour == 14


def test_scheduled_and_manual_triggers_load_without_the_lifecycle_warning() -> None:
    text = DEFINITION.replace("    - type: manual\n      name: by_hand\n", "")
    loaded = load_definition(text.format(trigger='      schedule: "0 * * * *"'))
    assert loaded.warnings == []
    assert not load_definition(DEFINITION.format(trigger='      schedule: "0 * * * *"')).warnings
    unread = DEFINITION.replace("type: manual", "type: schedule")
    assert load_definition(unread.format(trigger='      schedule: "0 * * * *"')).warnings


CANONICAL = """\
name: report
inputs:
  scope: {type: string, required: true}
triggers:
  - type: scheduled
    name: hourly
    schedule: "0 * * * *"
    inputs: {scpe: full}
dag:
  nodes:
    - {id: a, handler: noop}
"""


def test_schedule_inputs_are_checked_against_the_declared_ones() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition(CANONICAL)
    found = sorted((issue.line, issue.message) for issue in caught.value.issues)
    assert found == [(8, "scheduled trigger: unknown input 'scpe'")]
    (spec,) = scheduled_triggers(load_definition(CANONICAL.replace("scpe", "scope")).spec.triggers)
    assert spec.inputs == {"scope": "full"}


def test_tick_and_event_keys_fit_the_column_and_never_meet() -> None:
    from orchestrion.core.idempotency import caller_key_problem, event_key
    from orchestrion.store.schedules import firing_key

    long_id = "n" * 200 + ":" + "t" * 100
    keys = {firing_key(long_id, T0), firing_key(long_id, T0 + 1), firing_key("a:b", T0)}
    keys |= {event_key("a:b", "c", "d"), event_key("a", "b:c", "d"), event_key("a", "b", "c:d")}
    keys |= {event_key("t" * 128, "i" * 128, "w" * 200), event_key("t" * 128, "i" * 128, "w")}
    assert len(keys) == 8 and all(len(key) <= 255 for key in keys)
    assert firing_key("a:b", T0) == f"schedule:a:b@{T0:.3f}"  # short ones stay readable
    assert all(caller_key_problem(key) for key in keys)
    assert caller_key_problem("job-1") is None and caller_key_problem("my-event:1") is None


def _utc(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def _fired(spec: ScheduleSpec, start: str, end: str) -> list[str]:
    """What a scheduler passing every minute from ``start`` to ``end`` fires (UTC times)."""
    at, stop, cursor, fired = _utc(start), _utc(end), _utc(start), []
    while at < stop:
        plan = plan_ticks("s", spec, cursor, at)
        fired += plan.fire
        cursor = plan.cursor if plan.cursor is not None else cursor
        at += 60
    return [datetime.fromtimestamp(t, UTC).strftime("%m-%d %H:%M") for t in fired]


@pytest.mark.parametrize(
    ("schedule", "zone", "start", "end", "fired"),
    [
        # Clocks go back at 03:00 (Paris, 2027-10-31): 02:30 comes twice, the job runs once.
        ("30 2 * * *", "Europe/Paris", "2027-10-30T12:00", "2027-11-01T12:00",
         ["10-31 00:30", "11-01 01:30"]),
        ("*/30 2 * * *", "Europe/Paris", "2027-10-30T23:50", "2027-10-31T03:00",
         ["10-31 00:00", "10-31 00:30"]),
        # An hourly job runs by elapsed time: the repeated hour runs too.
        ("0 * * * *", "America/New_York", "2027-11-07T04:30", "2027-11-07T07:30",
         ["11-07 05:00", "11-07 06:00", "11-07 07:00"]),
        # Clocks go forward at 02:00 (2027-03-28): 02:30 does not exist, it runs at 03:00.
        ("30 2 * * *", "Europe/Paris", "2027-03-27T12:00", "2027-03-29T12:00",
         ["03-28 01:00", "03-29 00:30"]),
    ],
)  # fmt: skip
def test_a_daylight_saving_change_runs_a_fixed_hour_job_once(
    schedule: str, zone: str, start: str, end: str, fired: list[str]
) -> None:
    spec = ScheduleSpec(name="s", schedule=schedule, timezone=zone)
    assert _fired(spec, start, end) == fired
    first = next_tick(spec, _utc(start))
    assert first is not None
    assert datetime.fromtimestamp(first, UTC).strftime("%m-%d %H:%M") == fired[0]
