"""Scheduled triggers: a definition's ``triggers`` entries of ``type: scheduled``.

```yaml
triggers:
  - type: scheduled
    name: quarterly_review
    schedule: "0 0 1 */3 *"      # cron: minute hour day-of-month month day-of-week
    timezone: Europe/Paris       # IANA name; UTC when absent
    start: "2027-01-01T00:00:00Z"  # optional window
    end: "2028-01-01T00:00:00Z"
    inputs: {scope: full}        # the inputs of every execution it starts
    jitter: 30s                  # each tick waits a stable random delay up to this
    catchup: latest              # after downtime: skip | latest | all
    catchup_limit: 10            # with `all`: at most this many missed ticks
    overlap: skip                # previous run still going: allow | skip | cancel_previous | queue
```

The other trigger types are kept as they are written; ``schedule_issues`` finds what is wrong
with the scheduled ones (the loader puts the line on each), ``scheduled_triggers`` reads them.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrion.definition.config_check import describe_pydantic_error
from orchestrion.definition.durations import Duration
from orchestrion.definition.model import InputParam
from orchestrion.errors import DefinitionIssue

__all__ = [
    "SCHEDULED",
    "CatchUp",
    "Overlap",
    "ScheduleSpec",
    "check_cron",
    "check_timezone",
    "schedule_issues",
    "scheduled_triggers",
]

SCHEDULED = "scheduled"
_MAX_JITTER = 86400.0  # a day: a larger delay would pass the next tick of most schedules
_MAX_CATCHUP = 1000
_LAST_INSTANT = 32503680000.0  # 3000-01-01: later times overflow the calendar in some zones


class CatchUp(StrEnum):
    """What to do with ticks missed while no scheduler ran."""

    SKIP = "skip"  # none of them: go on from now
    LATEST = "latest"  # the newest one only, once
    ALL = "all"  # each of them, oldest first, at most ``catchup_limit``


class Overlap(StrEnum):
    """What a tick does when the execution of an earlier tick is still going (as Temporal's
    schedule overlap policies)."""

    ALLOW = "allow"  # start another alongside
    SKIP = "skip"  # record the tick as skipped
    CANCEL_PREVIOUS = "cancel_previous"  # cancel the running one, then start
    QUEUE = "queue"  # start once the running one finished


_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
"""Cron's macros (as Vixie cron, croniter and Kubernetes CronJobs read them); ``@reboot``,
which names no time, is not one a schedule can have."""


def check_cron(expression: str) -> str:
    """``expression`` stripped if it is a cron expression; ``ValueError`` if not.

    Five fields (minute hour day-of-month month day-of-week), or six with seconds last; or
    one of cron's macros (``@hourly``...), which stands for its five fields.
    """
    text = expression.strip()
    if text.startswith("@"):
        macro = _MACROS.get(text.lower())
        if macro is None:
            raise ValueError(f"cron expression {expression!r}: the macros are {', '.join(_MACROS)}")
        text = macro
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            f"cron expression {expression!r} must have 5 fields (minute hour day-of-month"
            " month day-of-week), or 6 with seconds last"
        )
    # croniter's `R` picks a random value at each reading: every process, and every pass of
    # the scheduler, would see other ticks (no month or day name starts with R).
    if any(part[:1] in ("R", "r") for f in fields for part in f.split(",")):
        raise ValueError(f"cron expression {expression!r}: random values (R) are not supported")
    # Imported here: croniter and dateutil cost every start about 10 ms, and only
    # definitions with a schedule use them.
    from croniter import CroniterError, croniter

    if not croniter.is_valid(text):
        raise ValueError(f"invalid cron expression {expression!r}")
    try:
        croniter(text, time.time(), ret_type=float, second_at_beginning=False).get_next(float)
    except (CroniterError, ValueError, OverflowError):
        # Parses, but names no date there is (February 30th): it would never fire.
        message = f"cron expression {expression!r} never fires: no date matches it"
        raise ValueError(message) from None
    return text


def check_timezone(name: str) -> str:
    """``name`` if it is an IANA time zone known to this system; ``ValueError`` if not."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"unknown time zone {name!r} (an IANA name like 'Europe/Paris')") from None
    return name


class ScheduleSpec(BaseModel):
    """One scheduled trigger, validated. Times are epoch seconds (``start``/``end`` accept
    ISO 8601 text; without an offset, they are read in ``timezone``)."""

    # Built on first use: every definition's check imports this module, few have a schedule.
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    type: Literal["scheduled"] = "scheduled"
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    schedule: str
    timezone: str = "UTC"
    # Epoch seconds from 1970 to the year 3000 (an infinite or far-off time has no tick).
    start: float | None = Field(default=None, ge=0, le=_LAST_INSTANT, allow_inf_nan=False)
    end: float | None = Field(default=None, ge=0, le=_LAST_INSTANT, allow_inf_nan=False)
    inputs: dict[str, Any] = Field(default_factory=dict)
    jitter: Duration = 0.0
    catchup: CatchUp = CatchUp.SKIP
    catchup_limit: int = Field(default=100, ge=1, le=_MAX_CATCHUP)
    overlap: Overlap = Overlap.ALLOW
    description: str | None = None

    @field_validator("schedule")
    @classmethod
    def _cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        return check_timezone(value)

    @field_validator("jitter")
    @classmethod
    def _jitter(cls, value: float) -> float:
        if value > _MAX_JITTER:
            raise ValueError("jitter must be at most a day")
        return value

    @field_validator("start", "end", mode="before")
    @classmethod
    def _instant(cls, value: Any) -> Any:
        if isinstance(value, datetime):
            return value.timestamp() if value.tzinfo else value
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(f"{value!r} is not an ISO 8601 date or time") from None
            return parsed.timestamp() if parsed.tzinfo else value
        return value

    @model_validator(mode="after")
    def _window(self) -> ScheduleSpec:
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise ValueError("end must be after start")
        return self


def _naive_in_zone(entry: dict[str, Any]) -> dict[str, Any]:
    """``start``/``end`` written without an offset are wall-clock times in ``timezone``."""
    zone_name = entry.get("timezone", "UTC")
    out = dict(entry)
    for key in ("start", "end"):
        value = out.get(key)
        if isinstance(value, datetime) and value.tzinfo is None:
            value = value.isoformat()
        if isinstance(value, str):
            try:
                parsed = datetime.fromisoformat(value)
                zone = ZoneInfo(zone_name) if isinstance(zone_name, str) else None
            except (ValueError, ZoneInfoNotFoundError, OSError):
                continue  # the model names the problem
            if parsed.tzinfo is None and zone is not None:
                out[key] = parsed.replace(tzinfo=zone).timestamp()
    return out


def _parse(
    index: int, entry: Any
) -> tuple[ScheduleSpec | None, list[tuple[DefinitionIssue, tuple[str | int, ...]]]]:
    where: tuple[str | int, ...] = ("triggers", index)
    try:
        return ScheduleSpec.model_validate(_naive_in_zone(entry)), []
    except ValidationError as exc:
        problems = []
        for error in exc.errors(include_url=False):
            loc = tuple(error["loc"])
            problems.append(
                (
                    DefinitionIssue(
                        f"scheduled trigger: {describe_pydantic_error(error)}",
                        code="invalid_schedule",
                    ),
                    (*where, *loc),
                )
            )
        return None, problems
    except ValueError as exc:
        return None, [
            (DefinitionIssue(f"scheduled trigger: {exc}", code="invalid_schedule"), where)
        ]


def _scheduled(triggers: tuple[dict[str, Any], ...]) -> list[tuple[int, dict[str, Any]]]:
    return [
        (i, entry)
        for i, entry in enumerate(triggers)
        if isinstance(entry, dict) and entry.get("type") == SCHEDULED
    ]


def _input_issues(
    index: int, spec: ScheduleSpec, declared: Mapping[str, InputParam]
) -> list[tuple[DefinitionIssue, tuple[str | int, ...]]]:
    """Inputs the workflow does not declare (a workflow that declares none takes any): found
    now rather than at every tick. A required input left out is not refused here (reference
    004 schedules a workflow with required inputs): its ticks are recorded as skipped."""
    if not declared:
        return []
    where: tuple[str | int, ...] = ("triggers", index, "inputs")
    return [
        (
            DefinitionIssue(f"scheduled trigger: unknown input '{name}'", code="unknown_input"),
            (*where, name),
        )
        for name in spec.inputs
        if name not in declared
    ]


def schedule_issues(
    triggers: tuple[dict[str, Any], ...],
    declared: Mapping[str, InputParam] | None = None,
) -> list[tuple[DefinitionIssue, tuple[str | int, ...]]]:
    """Every problem of the scheduled triggers, each with its canonical path
    (``("triggers", 1, "schedule")``): names given twice, and inputs that the workflow's
    ``declared`` inputs refuse, included."""
    problems: list[tuple[DefinitionIssue, tuple[str | int, ...]]] = []
    seen: set[str] = set()
    for i, entry in _scheduled(triggers):
        spec, found = _parse(i, entry)
        problems.extend(found)
        if spec is not None:
            problems.extend(_input_issues(i, spec, declared or {}))
            if spec.name in seen:
                issue = DefinitionIssue(
                    f"scheduled trigger name '{spec.name}' is used twice", code="duplicate_schedule"
                )
                problems.append((issue, ("triggers", i, "name")))
            seen.add(spec.name)
    return problems


def scheduled_triggers(triggers: tuple[dict[str, Any], ...]) -> list[ScheduleSpec]:
    """The valid scheduled triggers (a definition that loaded has only valid ones)."""
    return [spec for i, entry in _scheduled(triggers) if (spec := _parse(i, entry)[0]) is not None]
