"""Events that start workflows: ``POST /v1/events/{event_type}`` (operator role).

The body is the event's payload, a JSON object; its top-level ``id``, when there is one, is
the event's id (otherwise the ``Idempotency-Key`` header, otherwise a new one) and is not part
of the payload. The engine (``Engine.emit``) starts every active workflow listening to the
type; the same id again starts nothing twice.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.api.convert import execution_state
from orchestrion.api.event_models import EmitResponse, EventExecution, EventSkipped
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.routes import OPERATE_JSON, Ctx
from orchestrion.definition.triggers import EVENT_TYPE_PATTERN, WORKFLOW_EVENTS
from orchestrion.engine.emitting import EVENT_ID_PATTERN, Emitted, EventConflict, EventRefused

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["events"])

EventType = Annotated[
    str,
    PathParam(
        pattern=EVENT_TYPE_PATTERN.pattern,
        description="The event's type, such as policy.updated",
    ),
]
EventKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=EVENT_ID_PATTERN.pattern,
        description="The event's id when the body has none: sent again, it starts nothing new",
    ),
]


class EventBody(BaseModel):
    """The event's payload, a JSON object; its optional ``id`` is the event's id."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={"examples": [{"id": "evt-42", "policy": "ict", "severity": "high"}]},
    )

    id: str | None = Field(
        default=None,
        pattern=EVENT_ID_PATTERN.pattern,
        description="The event's id (not part of the payload); a new one when absent",
    )


@router.post(
    "/events/{event_type}",
    status_code=202,
    response_model=EmitResponse,
    dependencies=OPERATE_JSON,
    responses=error_responses(400, 409, 415),
    summary="Send an event: start every active workflow with a trigger for its type",
)
async def emit_event(
    event_type: EventType,
    ctx: Ctx,
    body: Annotated[EventBody | None, Body()] = None,
    idempotency_key: EventKey = None,
) -> EmitResponse:
    if event_type in WORKFLOW_EVENTS:
        # The engine's own events: an event no caller may send, whatever its key (so 422, as
        # `orchestrion emit` refuses it locally, not 403, which says the key lacks a right).
        raise ApiProblem(
            422, f"'{event_type}' events are fired by the engine only", slug="reserved-event"
        )
    payload = dict(body.model_extra or {}) if body is not None else {}
    event_id = body.id if body is not None and body.id is not None else idempotency_key
    try:
        emitted = await ctx.engine.emit(event_type, payload, event_id)
    except EventRefused as exc:
        raise ApiProblem(422, str(exc), slug="invalid-event") from None
    except EventConflict as exc:  # the id again with another payload: nothing started
        raise ApiProblem(409, str(exc), slug="event-conflict") from None
    return emit_response(emitted)


def emit_response(emitted: Emitted) -> EmitResponse:
    """The answer to ``emitted`` (also what ``orchestrion emit --json`` prints)."""
    started = [
        EventExecution(
            execution_id=item.execution_id,
            workflow=item.workflow,
            version=item.version,
            definition_id=item.definition_id,
            trigger=item.trigger,
            status=execution_state(item.status),
        )
        for item in emitted.executions
    ]
    skipped = [
        EventSkipped(
            workflow=item.workflow,
            trigger=item.trigger,
            reason="filter" if item.reason == "filter" else "error",
            message=item.message,
        )
        for item in emitted.skipped
    ]
    new = sum(1 for item in emitted.executions if item.new)
    if started and new:
        message = f"the event started {new} execution(s)"
        if new < len(started):
            message += f", and {len(started) - new} when it was delivered before"
    elif started:
        message = f"this event was delivered before: it started {len(started)} execution(s) then"
    elif skipped:
        message = "no workflow listening to this event took it (see skipped)"
    else:
        message = f"no active workflow listens to '{emitted.event_type}' events"
    return EmitResponse(
        event_id=emitted.event_id,
        event_type=emitted.event_type,
        executions=started,
        skipped=skipped,
        message=message,
    )
