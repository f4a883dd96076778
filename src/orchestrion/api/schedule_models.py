"""The bodies of ``/v1/schedules``: a schedule, its recent firings, and a trigger-now answer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from orchestrion.api.convert import utc
from orchestrion.engine.schedules import last_tick, upcoming_tick
from orchestrion.store.schedules import FiringRecord, ScheduleRecord

__all__ = ["FiringView", "ScheduleList", "ScheduleView", "firing_view", "schedule_view"]


class FiringView(BaseModel):
    """The firing of one tick: ``pending`` until its execution starts, or ``skipped``."""

    tick_at: datetime
    status: str
    execution_id: str | None = None


class ScheduleView(BaseModel):
    """A scheduled trigger of a definition (id ``<definition name>:<trigger name>``)."""

    id: str
    definition_name: str
    definition_id: str
    trigger: str
    state: str = Field(description="active, paused or deleted")
    schedule: str = Field(description="the cron expression")
    timezone: str
    catchup: str
    overlap: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    next_tick_at: datetime | None = Field(
        default=None, description="the next tick it fires (none when paused or past its end)"
    )
    last_tick_at: datetime | None = Field(
        default=None, description="the newest tick dealt with (none before its first)"
    )
    recent_firings: list[FiringView] = Field(default_factory=list)


class ScheduleList(BaseModel):
    schedules: list[ScheduleView]


def firing_view(firing: FiringRecord) -> FiringView:
    tick = utc(firing.tick_at)
    assert tick is not None
    return FiringView(tick_at=tick, status=firing.status.value, execution_id=firing.execution_id)


def schedule_view(
    record: ScheduleRecord, now: float, firings: list[FiringRecord] | None = None
) -> ScheduleView:
    # As stored, not validated again: a schedule stored before its kind was refused is
    # still shown (with no next tick), so that it can be found, paused and deleted.
    spec = record.spec
    inputs = spec.get("inputs")
    return ScheduleView(
        id=record.id,
        definition_name=record.definition_name,
        definition_id=record.definition_id,
        trigger=record.trigger,
        state=record.state.value,
        schedule=str(spec.get("schedule", "")),
        timezone=str(spec.get("timezone", "UTC")),
        catchup=str(spec.get("catchup", "skip")),
        overlap=str(spec.get("overlap", "allow")),
        inputs=dict(inputs) if isinstance(inputs, dict) else {},
        next_tick_at=utc(upcoming_tick(record, now)),
        last_tick_at=utc(last_tick(record)),
        recent_firings=[firing_view(f) for f in firings or []],
    )
