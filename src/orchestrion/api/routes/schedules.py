"""Schedules: list, get, pause, resume, trigger now and delete (``/v1/schedules``).

Schedules come from the scheduled triggers of definitions; these routes change their state in
the store, which the process holding the scheduler lease reads on its next pass.
"""

from __future__ import annotations

import time
from typing import Annotated

from fastapi import APIRouter, Depends
from starlette.convertors import Convertor, register_url_convertor

from orchestrion.api.declared import input_level, trigger_inputs
from orchestrion.api.lineage import facts_of
from orchestrion.api.problems import error_responses
from orchestrion.api.redaction import Disclosure, disclosure
from orchestrion.api.routes import OPERATE, VIEW, Ctx
from orchestrion.api.schedule_models import (
    FiringView,
    ScheduleList,
    ScheduleView,
    firing_view,
    schedule_view,
)
from orchestrion.errors import OrchestrionError

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
Caller = Annotated[Disclosure, Depends(disclosure)]


async def _shown(ctx: Ctx, caller: Disclosure, view: ScheduleView) -> ScheduleView:
    """``view`` with its inputs masked as its definition's triggers are (``declared.py``)."""
    masker = caller.masker
    if masker is None or not view.inputs:
        return view
    try:
        definition = await ctx.engine.reads.definition(view.definition_id)
    except OrchestrionError:  # the definition is gone: nothing says what its inputs hold
        view.inputs = masker.mask_value(view.inputs)
        return view
    masks = ctx.engine.governance.masks
    if not any(masks(c) for c in facts_of(definition).classifications.values()):
        return view  # the workflow's own data, as its executions' outputs are
    hidden = input_level(definition.spec, masks)
    view.inputs = trigger_inputs({"inputs": view.inputs}, hidden, masker)["inputs"]
    return view


_FIRINGS_SHOWN = 10


@router.get(
    "",
    response_model=ScheduleList,
    dependencies=VIEW,
    responses=error_responses(),
    summary="List the schedules",
)
async def list_schedules(ctx: Ctx, caller: Caller) -> ScheduleList:
    now = time.time()
    records = await ctx.engine.schedules.all()
    return ScheduleList(
        schedules=[await _shown(ctx, caller, schedule_view(r, now)) for r in records]
    )


@router.get(
    "/{schedule_id:schedule_id}",
    response_model=ScheduleView,
    dependencies=VIEW,
    responses=_RESPONSES,
    summary="A schedule, its next tick and its recent firings",
)
async def get_schedule(schedule_id: str, ctx: Ctx, caller: Caller) -> ScheduleView:
    record = await ctx.engine.schedules.get(schedule_id)
    firings = await ctx.engine.schedules.firings(schedule_id, _FIRINGS_SHOWN)
    return await _shown(ctx, caller, schedule_view(record, time.time(), firings))


@router.post(
    "/{schedule_id:schedule_id}/pause",
    response_model=ScheduleView,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Stop firing (ticks that pass while paused are not owed)",
)
async def pause_schedule(schedule_id: str, ctx: Ctx, caller: Caller) -> ScheduleView:
    view = schedule_view(await ctx.engine.schedules.pause(schedule_id), time.time())
    return await _shown(ctx, caller, view)


@router.post(
    "/{schedule_id:schedule_id}/resume",
    response_model=ScheduleView,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Fire again from the next tick",
)
async def resume_schedule(schedule_id: str, ctx: Ctx, caller: Caller) -> ScheduleView:
    view = schedule_view(await ctx.engine.schedules.resume(schedule_id), time.time())
    return await _shown(ctx, caller, view)


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
async def delete_schedule(schedule_id: str, ctx: Ctx, caller: Caller) -> ScheduleView:
    view = schedule_view(await ctx.engine.schedules.delete(schedule_id), time.time())
    return await _shown(ctx, caller, view)
