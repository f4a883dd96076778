"""Schedules: list, get, pause, resume, trigger now and delete (``/v1/schedules``).

Schedules come from the scheduled triggers of definitions; these routes change their state in
the store, which the process holding the scheduler lease reads on its next pass.
"""

from __future__ import annotations

import time

from fastapi import APIRouter
from starlette.convertors import Convertor, register_url_convertor

from orchestrion.api.problems import error_responses
from orchestrion.api.routes import OPERATE, VIEW, Ctx
from orchestrion.api.schedule_models import (
    FiringView,
    ScheduleList,
    ScheduleView,
    firing_view,
    schedule_view,
)

__all__ = ["router"]

router = APIRouter(prefix="/v1/schedules", tags=["schedules"])


class _ScheduleId(Convertor[str]):
    """A schedule id, ``/`` included (a definition's name may hold one), that does not end
    in a verb's segment: a real id ends in ``:<trigger>``, so ``/v1/schedules/x/pause`` is
    the pause of ``x``, never the reading of a schedule named ``x/pause``."""

    regex = ".+(?<!/pause)(?<!/resume)(?<!/trigger)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("schedule_id", _ScheduleId())

_RESPONSES = error_responses(404)
_FIRINGS_SHOWN = 10


@router.get(
    "",
    response_model=ScheduleList,
    dependencies=VIEW,
    responses=error_responses(),
    summary="List the schedules",
)
async def list_schedules(ctx: Ctx) -> ScheduleList:
    now = time.time()
    return ScheduleList(schedules=[schedule_view(r, now) for r in await ctx.engine.schedules.all()])


@router.get(
    "/{schedule_id:schedule_id}",
    response_model=ScheduleView,
    dependencies=VIEW,
    responses=_RESPONSES,
    summary="A schedule, its next tick and its recent firings",
)
async def get_schedule(schedule_id: str, ctx: Ctx) -> ScheduleView:
    record = await ctx.engine.schedules.get(schedule_id)
    firings = await ctx.engine.schedules.firings(schedule_id, _FIRINGS_SHOWN)
    return schedule_view(record, time.time(), firings)


@router.post(
    "/{schedule_id:schedule_id}/pause",
    response_model=ScheduleView,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Stop firing (ticks that pass while paused are not owed)",
)
async def pause_schedule(schedule_id: str, ctx: Ctx) -> ScheduleView:
    return schedule_view(await ctx.engine.schedules.pause(schedule_id), time.time())


@router.post(
    "/{schedule_id:schedule_id}/resume",
    response_model=ScheduleView,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Fire again from the next tick",
)
async def resume_schedule(schedule_id: str, ctx: Ctx) -> ScheduleView:
    return schedule_view(await ctx.engine.schedules.resume(schedule_id), time.time())


@router.post(
    "/{schedule_id:schedule_id}/trigger",
    status_code=202,
    response_model=FiringView,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Fire once now (the scheduler starts it on its next pass)",
)
async def trigger_schedule(schedule_id: str, ctx: Ctx) -> FiringView:
    return firing_view(await ctx.engine.schedules.trigger_now(schedule_id))


@router.delete(
    "/{schedule_id:schedule_id}",
    response_model=ScheduleView,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Delete a schedule (until a new version of its definition declares it again)",
)
async def delete_schedule(schedule_id: str, ctx: Ctx) -> ScheduleView:
    return schedule_view(await ctx.engine.schedules.delete(schedule_id), time.time())
