"""The SwarmLite API description's routes: start, status and stop, on the /v1 verbs.

``POST /workflows/start`` takes ``{"definition": <YAML or JSON text, or an object>}`` and
submits and triggers it in one call (the /v1 submit and trigger verbs, one after the other).
``GET /workflows/{id}/status`` and ``POST /workflows/{id}/stop`` take an execution id or,
as that description's examples do, a workflow's name (its ``workflow_id``): the newest
execution of that workflow. Auth, rate limits, required headers, audit and problem documents
are those of /v1: the same dependencies, the same gate.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from orchestrion.api.models import ActionResponse, ExecutionDetail, TriggerRequest
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.redaction import Disclosure, disclosure
from orchestrion.api.routes import OPERATE, OPERATE_JSON, VIEW, Ctx, IdempotencyKey, caller_key
from orchestrion.api.routes.control import cancel_workflow
from orchestrion.api.routes.definitions import submitter
from orchestrion.api.routes.workflows import submit_text, trigger, workflow_detail
from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import ExecutionFilter

__all__ = ["router"]

router = APIRouter(tags=["compatibility: SwarmLite"])

Caller = Annotated[Disclosure, Depends(disclosure)]
WorkflowRef = Annotated[
    str,
    Path(
        min_length=1,
        max_length=255,
        description="an execution id, or a workflow name (its newest execution)",
    ),
]


class StartRequest(BaseModel):
    """The start body: the definition as YAML or JSON text (or a JSON object)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "definition": "workflow_id: api_test\ntasks:\n  - id: task1\n"
                    "    type: python\n    depends_on: []\n    config:\n"
                    '      function: "validate_schema"\n'
                }
            ]
        },
    )

    definition: str | dict[str, Any]
    idempotency_key: Annotated[
        str | None, Field(default=None, min_length=1, max_length=255), AfterValidator(caller_key)
    ] = None
    input_params: dict[str, Any] = Field(default_factory=dict)


class StartResponse(ActionResponse):
    """The started execution, with its workflow's name and stored version."""

    workflow_id: str
    workflow_definition_id: str
    version: str
    warnings: list[str] = Field(default_factory=list)


class StatusResponse(ExecutionDetail):
    """An execution's detail (as ``GET /v1/workflows/{id}``) with its workflow's name."""

    workflow_id: str


@router.post(
    "/workflows/start",
    status_code=202,
    response_model=StartResponse,
    dependencies=OPERATE_JSON,
    responses=error_responses(400, 409, 415),
    summary="Submit and start a workflow in one call (SwarmLite)",
)
async def start_workflow(
    body: StartRequest, request: Request, ctx: Ctx, idempotency_key: IdempotencyKey = None
) -> StartResponse:
    key = idempotency_key or body.idempotency_key
    by = submitter(request, ctx)
    given = body.input_params
    if isinstance(body.definition, str):
        submitted = await submit_text(ctx, body.definition, None, key, created_by=by, inputs=given)
    else:
        text = json.dumps(body.definition)
        submitted = await submit_text(ctx, text, "json", key, created_by=by, inputs=given)
    inputs = TriggerRequest(input_params=body.input_params) if body.input_params else None
    # With a key, a repeated start answers the execution it made, already started.
    started = await trigger(ctx, submitted.execution_id, inputs, key)
    return StartResponse(
        **started.model_dump(),
        workflow_id=submitted.name,
        workflow_definition_id=submitted.workflow_definition_id,
        version=submitted.version,
        warnings=submitted.warnings,
    )


async def resolve(ctx: Ctx, reference: str) -> str:
    """The execution ``reference`` names: an execution id, else the newest execution of
    the workflow of that name; 404 naming both readings when neither exists."""
    try:
        return (await ctx.engine.reads.execution(reference)).id
    except ExecutionNotFound:
        pass
    records, _ = await ctx.engine.list_executions(
        ExecutionFilter(definition_name=reference, limit=1)
    )
    if not records:
        raise ApiProblem(
            404,
            f"no execution has the id {reference!r} and no workflow is named {reference!r}",
            slug="not-found",
        )
    return records[0].id


@router.get(
    "/workflows/{workflow_id:path}/status",
    response_model=StatusResponse,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="An execution's status, by execution id or workflow name (SwarmLite)",
)
async def workflow_status(workflow_id: WorkflowRef, ctx: Ctx, caller: Caller) -> StatusResponse:
    detail = await workflow_detail(ctx, caller, await resolve(ctx, workflow_id))
    if not isinstance(detail, ExecutionDetail):  # with outputs it is the model itself
        raise TypeError(f"unexpected execution detail {type(detail).__name__}")
    return StatusResponse(**detail.model_dump(), workflow_id=detail.workflow)


@router.post(
    "/workflows/{workflow_id:path}/stop",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=error_responses(400, 404, 409),
    summary="Cancel an execution, by execution id or workflow name (SwarmLite)",
)
async def stop_workflow(workflow_id: WorkflowRef, ctx: Ctx) -> ActionResponse:
    return await cancel_workflow(await resolve(ctx, workflow_id), ctx)
