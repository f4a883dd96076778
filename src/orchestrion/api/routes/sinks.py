"""Event sinks (admin role): what each configured sink did, and the events it still owes.

``GET /v1/admin/sinks`` lists the configured sinks (never a secret: only the names of the
variables holding them) with their counters and what they owe; ``GET
/v1/admin/sinks/deliveries`` pages through the events a sink did not take (``status=dead``:
the dead letters); ``POST .../{id}/retry`` makes one due again now; ``DELETE .../{id}`` drops
it (that sink never gets the event).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict

from orchestrion.api.problems import error_responses
from orchestrion.api.routes import ADMIN, Ctx
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus

__all__ = ["router"]

router = APIRouter(prefix="/v1/admin", tags=["admin"])

DeliveryId = Annotated[int, PathParam(ge=1, le=2**62, description="The delivery's id")]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SinkOut(_Out):
    """One configured sink: its settings without secrets, and its counters in this process."""

    name: str
    type: str
    events: list[str]
    owed: int
    dead: int
    published: int | None
    failed: int | None
    dead_lettered: int | None


class SinksOut(_Out):
    """Every configured sink, and the outbox entries waiting (all sinks together)."""

    sinks: list[SinkOut]
    backlog: int
    publishing_here: bool


class DeliveryOut(_Out):
    """An event one sink did not take: retried at ``next_at``, or dead."""

    id: int
    sink: str
    event_id: str
    event_type: str
    status: Literal["retry", "dead"]
    attempts: int
    error: str | None
    next_at: float
    created_at: float
    updated_at: float
    event: dict[str, Any]


class DeliveryPage(_Out):
    items: list[DeliveryOut]


def _delivery(record: DeliveryRecord) -> DeliveryOut:
    return DeliveryOut(
        id=record.id,
        sink=record.sink,
        event_id=record.event_id,
        event_type=str(record.event.get("type")),
        status="dead" if record.status is DeliveryStatus.DEAD else "retry",
        attempts=record.attempts,
        error=record.error,
        next_at=record.next_at,
        created_at=record.created_at,
        updated_at=record.updated_at,
        event=record.event,
    )


@router.get(
    "/sinks",
    response_model=SinksOut,
    dependencies=ADMIN,
    responses=error_responses(),
    summary="The configured event sinks, their counters and what they owe",
)
async def list_sinks(ctx: Ctx) -> SinksOut:
    engine = ctx.engine
    config = engine.sinks_config
    counts = await engine.deliveries.counts()
    publisher = engine.publisher
    found = []
    for sink in config.sinks if config is not None else ():
        stats = publisher.stats.get(sink.name) if publisher is not None else None
        found.append(
            SinkOut(
                name=sink.name,
                type=sink.type,
                events=list(sink.events),
                owed=counts.get((sink.name, DeliveryStatus.RETRY), 0),
                dead=counts.get((sink.name, DeliveryStatus.DEAD), 0),
                published=None if stats is None else stats.published,
                failed=None if stats is None else stats.failed,
                dead_lettered=None if stats is None else stats.dead_lettered,
            )
        )
    backlog = await engine.deliveries.backlog()
    return SinksOut(
        sinks=found, backlog=backlog, publishing_here=bool(publisher and publisher.holding)
    )


@router.get(
    "/sinks/deliveries",
    response_model=DeliveryPage,
    dependencies=ADMIN,
    responses=error_responses(),
    summary="Events a sink did not take: to retry, or dead letters (status=dead)",
)
async def list_deliveries(
    ctx: Ctx,
    status: Annotated[Literal["retry", "dead"] | None, Query()] = None,
    sink: Annotated[str | None, Query(min_length=1, max_length=100)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> DeliveryPage:
    wanted = None if status is None else DeliveryStatus(status)
    found = await ctx.engine.deliveries.list(wanted, sink, limit)
    return DeliveryPage(items=[_delivery(record) for record in found])


@router.post(
    "/sinks/deliveries/{delivery_id}/retry",
    status_code=202,
    response_model=DeliveryOut,
    dependencies=ADMIN,
    responses=error_responses(404),
    summary="Send an event to its sink again now (a dead letter too)",
)
async def retry(ctx: Ctx, delivery_id: DeliveryId) -> DeliveryOut:
    return _delivery(await ctx.engine.deliveries.retry(delivery_id))  # ExecutionNotFound: 404


@router.delete(
    "/sinks/deliveries/{delivery_id}",
    status_code=202,
    response_model=DeliveryOut,
    dependencies=ADMIN,
    responses=error_responses(404),
    summary="Drop an event a sink did not take: that sink never gets it",
)
async def drop(ctx: Ctx, delivery_id: DeliveryId) -> DeliveryOut:
    return _delivery(await ctx.engine.deliveries.drop(delivery_id))
