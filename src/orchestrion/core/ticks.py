"""Which ticks of a schedule are due: cron times, the window, jitter and the catch-up policy.

Pure: the scheduler passes the last tick it dealt with (the cursor) and the time now, and gets
back the ticks to fire, those the catch-up policy drops, and the new cursor. A tick is *on time*
when it is at most ``grace`` seconds late; older ones were missed while no scheduler ran, and
``catchup`` decides about them. Work is bounded however long the downtime was: ticks are read
backwards from now, and only as many as the policy can fire.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from orchestrion.definition.schedules import CatchUp, ScheduleSpec

if TYPE_CHECKING:
    from croniter import croniter

# croniter (and dateutil) is imported by the functions that compute ticks, not at start:
# a process that runs no schedule does not pay for it (about 10 ms).

__all__ = ["DEFAULT_GRACE", "TickError", "TickPlan", "jitter_of", "next_tick", "plan_ticks"]

DEFAULT_GRACE = 60.0
_MAX_ON_TIME = 1000  # an every-second schedule has 60 on-time ticks in the default grace


class TickError(ValueError):
    """The ticks of a schedule cannot be computed (a date no calendar has, a time out of
    range): that schedule is broken, the others are not."""


@dataclass(slots=True)
class TickPlan:
    """What one scheduler pass does with one schedule: fire these ticks (oldest first), then
    remember ``cursor`` (None: unchanged) as the newest tick dealt with."""

    fire: list[float] = field(default_factory=list)
    cursor: float | None = None


def jitter_of(schedule_id: str, tick: float, jitter: float) -> float:
    """A delay in [0, jitter) that is the same for one tick in every process (a hash)."""
    if jitter <= 0:
        return 0.0
    digest = hashlib.sha256(f"{schedule_id}\0{tick!r}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * jitter


def _cron(spec: ScheduleSpec, at: float) -> croniter:
    from croniter import croniter as cron

    start = datetime.fromtimestamp(at, ZoneInfo(spec.timezone))
    return cron(spec.schedule, start, ret_type=float, second_at_beginning=False)


def _repeated(spec: ScheduleSpec, tick: float) -> bool:
    """Whether ``tick`` is the second time its wall-clock time comes (the hour repeated when
    clocks go back) for a schedule at fixed hours: such a job runs once, as cron's does.
    A schedule whose hour field has ``*`` runs by elapsed time, so both ticks stay."""
    if spec.timezone == "UTC" or "*" in spec.schedule.split()[1]:
        return False
    return datetime.fromtimestamp(tick, ZoneInfo(spec.timezone)).fold == 1


def next_tick(spec: ScheduleSpec, after: float) -> float | None:
    """The first tick strictly after ``after`` inside the window, or None past ``end``;
    ``TickError`` when it cannot be computed."""
    from croniter import CroniterError

    try:
        ticks = _cron(spec, max(after, (spec.start or after) - 1e-6))
        tick = float(ticks.get_next(float))
        while _repeated(spec, tick):
            tick = float(ticks.get_next(float))
    except (CroniterError, ValueError, OverflowError) as exc:
        raise TickError(f"no next tick for {spec.schedule!r}: {exc}") from None
    if spec.end is not None and tick > spec.end:
        return None
    return tick


def _in_window(spec: ScheduleSpec, tick: float) -> bool:
    return (spec.start is None or tick >= spec.start) and (spec.end is None or tick <= spec.end)


def plan_ticks(
    schedule_id: str,
    spec: ScheduleSpec,
    cursor: float,
    now: float,
    grace: float = DEFAULT_GRACE,
) -> TickPlan:
    """The ticks after ``cursor`` that are due at ``now`` and what to do with them;
    ``TickError`` when they cannot be computed."""
    from croniter import CroniterError

    try:
        return _plan(schedule_id, spec, cursor, now, grace)
    except (CroniterError, ValueError, OverflowError) as exc:
        raise TickError(f"no ticks for {spec.schedule!r}: {exc}") from None


def _plan(
    schedule_id: str, spec: ScheduleSpec, cursor: float, now: float, grace: float
) -> TickPlan:
    missed_room = {CatchUp.SKIP: 0, CatchUp.LATEST: 1, CatchUp.ALL: spec.catchup_limit}[
        spec.catchup
    ]
    # Ticks in (cursor, now], newest first, until the policy has no use for older ones.
    backwards = _cron(spec, now + 1e-6)
    due_desc: list[float] = []
    missed = 0
    while len(due_desc) <= _MAX_ON_TIME + missed_room:
        tick = float(backwards.get_prev(float))
        if tick <= cursor:
            break
        if now - tick - jitter_of(schedule_id, tick, spec.jitter) > grace:
            if missed >= missed_room:
                break  # older ones are dropped: the cursor passes them below
            missed += 1
        due_desc.append(tick)
    plan = TickPlan()
    for tick in reversed(due_desc):
        if tick + jitter_of(schedule_id, tick, spec.jitter) > now:
            return plan  # not yet: it and what follows wait for a later pass
        plan.cursor = tick
        if _in_window(spec, tick) and not _repeated(spec, tick):
            plan.fire.append(tick)
    if due_desc:
        plan.cursor = due_desc[0]
    else:  # all missed and dropped: go on from the newest of them
        newest = float(_cron(spec, now + 1e-6).get_prev(float))
        plan.cursor = newest if newest > cursor else None
    return plan
