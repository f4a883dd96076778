"""Stored definitions: list, read, start a new execution of one; list a name's versions,
activate one, deprecate one (``engine/versions.py``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.convertors import Convertor, register_url_convertor

from orchestrion.api.auth import caller_of
from orchestrion.api.convert import definition_detail, definition_summary, execution_state
from orchestrion.api.declared import declared
from orchestrion.api.models import (
    ActionResponse,
    DefinitionDetail,
    DefinitionPage,
    StartExecutionRequest,
    TriggerRequest,
)
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.redaction import Disclosure, disclosure
from orchestrion.api.routes import OPERATE, OPERATE_JSON, VIEW, Ctx, IdempotencyKey
from orchestrion.api.routes.workflows import trigger
from orchestrion.api.start_shapes import body_fields, refuse, start_parts
from orchestrion.api.version_models import VersionList, VersionView, version_list, version_view
from orchestrion.core.states import ExecutionStatus

__all__ = ["router"]

router = APIRouter(prefix="/v1/definitions", tags=["definitions"])


class _DefinitionName(Convertor[str]):
    """A definition's name, ``/`` included, that does not end in ``/executions``,
    ``/versions``, ``/activate`` or ``/deprecate``: those paths are the start of a new
    execution and a name's versions, and answer (405) only to what their routes allow."""

    regex = ".+(?<!/executions)(?<!/versions)(?<!/activate)(?<!/deprecate)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("definition_name", _DefinitionName())


@router.get(
    "",
    response_model=DefinitionPage,
    dependencies=VIEW,
    responses=error_responses(),
    summary="List stored definition versions",
)
async def list_definitions(
    ctx: Ctx,
    name: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> DefinitionPage:
    records = await ctx.engine.reads.definitions(name, limit, offset)
    return DefinitionPage(items=[definition_summary(record) for record in records])


@router.get(
    "/{name:definition_name}",
    response_model=DefinitionDetail,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="A stored definition (the active version unless one is given)",
)
async def get_definition(
    name: str,
    ctx: Ctx,
    caller: Annotated[Disclosure, Depends(disclosure)],
    version: str | None = None,
    include_source: Annotated[
        bool, Query(description="include the text the version was submitted as (`source`)")
    ] = False,
) -> DefinitionDetail:
    record = await ctx.engine.reads.find_definition(name, version)
    detail = definition_detail(record, include_source=include_source)
    masker = caller.masker
    if masker is not None:  # literal values of classified nodes: see ``declared.py``
        detail.spec, detail.source = declared(
            detail.spec, detail.source, masker, ctx.engine.governance.masks
        )
    return detail


@router.post(
    "/{name:definition_name}/executions",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE_JSON,
    responses=error_responses(400, 404, 409, 415),
    summary="Start a new execution of a stored definition",
)
async def start_execution(
    name: str,
    ctx: Ctx,
    body: StartExecutionRequest | None = None,
    idempotency_key: IdempotencyKey = None,
) -> ActionResponse:
    body = body or StartExecutionRequest()
    engine = ctx.engine
    definition = await engine.reads.find_definition(name, body.version)
    # Refused with every problem before the execution is made: a refusal leaves nothing.
    parts = start_parts(*body_fields(body))
    if parts.issues:
        await refuse(engine, definition.id, parts)
    await engine.check_start(definition.id, parts.inputs, parts.overrides)
    record, created = await engine.create_execution(definition.id, idempotency_key=idempotency_key)
    if record.definition_id != definition.id:
        raise ApiProblem(
            409,
            "this Idempotency-Key was already used for an execution of another definition",
            slug="idempotency-conflict",
        )
    if created:
        ctx.metrics.execution_created()
    elif record.status is not ExecutionStatus.PENDING:
        return ActionResponse(
            execution_id=record.id,
            status=execution_state(record.status),
            message="Workflow was already started",
        )
    # The trigger verb's own path: a start raced under the same key by another server
    # process answers the execution that start made, not a conflict.
    start = TriggerRequest(input_params=parts.inputs, node_overrides=parts.overrides)
    return await trigger(ctx, record.id, start, idempotency_key)


@router.get(
    "/{name:definition_name}/versions",
    response_model=VersionList,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="Every version of a definition: status, who created it and when, the active one",
)
async def list_versions(name: str, ctx: Ctx) -> VersionList:
    records, active = await ctx.engine.versions(name)
    return version_list(name, records, active)


@router.post(
    "/{name:definition_name}/versions/{version}/activate",
    response_model=VersionView,
    dependencies=OPERATE,
    responses=error_responses(404, 409),
    summary="Make a version the active one (running executions keep theirs)",
)
async def activate_version(name: str, version: str, request: Request, ctx: Ctx) -> VersionView:
    record = await ctx.engine.activate(name, version, by=submitter(request, ctx))
    return version_view(record, record.id)


@router.post(
    "/{name:definition_name}/versions/{version}/deprecate",
    response_model=VersionView,
    dependencies=OPERATE,
    responses=error_responses(404),
    summary="Retire a version: never the active one again (running executions keep it)",
)
async def deprecate_version(name: str, version: str, request: Request, ctx: Ctx) -> VersionView:
    record = await ctx.engine.deprecate(name, version, by=submitter(request, ctx))
    return version_view(record, None)


def submitter(request: Request, ctx: Ctx) -> str:
    """Who the request authenticated as: its key's name, else its key id (``anonymous`` on
    an open API). Recorded as who created a version or changed its status."""
    caller = caller_of(request.scope, ctx.settings)
    return caller.name or caller.key_id or "anonymous"
