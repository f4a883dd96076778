"""Submit, trigger, inspect and list executions (references 001 and 003 under /v1)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse

from orchestrion.api.auth import caller_of
from orchestrion.api.child_progress import child_progress
from orchestrion.api.context import ApiContext, current_request_id
from orchestrion.api.convert import (
    execution_detail,
    execution_state,
    execution_summary,
    results_response,
)
from orchestrion.api.direct_route import DirectRoute, direct
from orchestrion.api.execution_filters import (
    After,
    Before,
    IdPrefix,
    IdSuffix,
    StatusQuery,
    Trigger,
    Workflow,
    execution_filter,
)
from orchestrion.api.media import JSON_TYPES, media_type
from orchestrion.api.models import (
    ActionResponse,
    CountBucket,
    ExecutionCounts,
    ExecutionDetail,
    ExecutionPage,
    ExecutionSeries,
    ResultsResponse,
    SubmitResponse,
    TriggerRequest,
    ValidationReport,
)
from orchestrion.api.params import CURSOR_PATTERN
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.raw_headers import header
from orchestrion.api.redaction import Disclosure, disclosure_of
from orchestrion.api.routes import OPERATE, OPERATE_JSON, VIEW, Ctx, IdempotencyKey, context
from orchestrion.api.settled import started_answer
from orchestrion.api.start_shapes import StartParts, body_fields, refuse, start_parts
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.definition.loader import LoadedDefinition, load_definition
from orchestrion.definition.validate import gc_paused
from orchestrion.engine.gc_tuning import freeze_large
from orchestrion.engine.trigger_checks import check_inputs
from orchestrion.errors import DefinitionError, DefinitionIssue, ExecutionError, InvalidTransition
from orchestrion.execution import enforce
from orchestrion.store import rules
from orchestrion.store.base import DefinitionRecord

__all__ = ["router", "submit_text", "trigger", "workflow_detail"]

router = APIRouter(prefix="/v1", tags=["workflows"], route_class=DirectRoute)

# The hot routes (submit, trigger, status) take the request and no other dependency than
# their access check: the context and the caller's view are read from it directly, as every
# node of FastAPI's dependency tree costs each request tens of microseconds; and their plain
# requests skip FastAPI's parameter solving altogether (``direct``, api/direct_route.py).

_YAML = ("application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml")
# A definition this short is read and checked on the event loop (tens of nodes: under a
# millisecond), as a hop to a worker thread and back would cost more than the work.
_INLINE_DEFINITION_CHARS = 8 * 1024

_DEFINITION_BODY: dict[str, Any] = {
    "required": True,
    "description": "A workflow definition (canonical, or a reference dialect), JSON or YAML",
    "content": {
        "application/json": {
            "schema": {"type": "object", "additionalProperties": True},
            "example": {
                "name": "Parallel API Fetcher",
                "dag": {"nodes": [{"id": "input", "handler": "input", "dependencies": []}]},
            },
        },
        "application/yaml": {"schema": {"type": "string"}},
    },
}


def _load(text: str, fmt: str | None, ctx: ApiContext) -> LoadedDefinition:
    # A definition text must never be taken for a file path on the server (`/etc/passwd`):
    # the loader treats one-line strings naming an existing file as paths, so add a newline.
    if "\n" not in text:
        text += "\n"
    kept = ctx.checked.get(text, fmt, ctx.engine)
    if kept is not None:
        return kept
    # The policy applies while validating: a python function outside the allowlist is
    # refused before its module is ever imported.
    context = enforce.validation_context(ctx.engine.governance)
    with gc_paused():
        loaded = load_definition(
            text,
            fmt=fmt,
            registry=ctx.engine.registry,
            context=context,
            limits=ctx.engine.definition_limits,
        )
        # Frozen before the collector runs again: a pass over its many objects would hold
        # the event loop (see gc_tuning).
        freeze_large(len(loaded.spec.dag.nodes), ctx.engine.settings.gc_freeze)
    ctx.checked.put(text, fmt, ctx.engine, loaded)
    return loaded


def _too_large(limit: int) -> ApiProblem:
    return ApiProblem(
        413,
        f"the definition is larger than the limit of {limit} bytes (definitions.max_bytes)",
    )


def _format_of(request: Request) -> str | None:
    """The definition's format from the content type (None: sniff it)."""
    media = media_type(request)
    if media is None:
        return None
    if media in JSON_TYPES or media.endswith("+json"):
        return "json"
    if media in _YAML:
        return "yaml"
    raise ApiProblem(
        415, f"unsupported content type {media!r}: send application/json or application/yaml"
    )


async def _definition_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 once it is larger than ``limit`` bytes."""
    declared = header(request.scope, b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)  # refused unread
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


@router.post(
    "/workflow",
    status_code=201,
    response_model=SubmitResponse,
    dependencies=OPERATE,
    responses=error_responses(400, 409, 415),
    openapi_extra={"requestBody": _DEFINITION_BODY},
    summary="Submit a workflow definition and create a pending execution",
)
@direct
async def submit_workflow(
    request: Request, idempotency_key: IdempotencyKey = None
) -> SubmitResponse:
    ctx = context(request)
    fmt = _format_of(request)
    raw = await _definition_body(request, ctx.engine.definition_limits.max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        issue = DefinitionIssue("the body is not UTF-8 text", code="encoding")
        raise DefinitionError([issue], source="request body") from None
    caller = caller_of(request.scope, ctx.settings)
    by = caller.name or caller.key_id or "anonymous"
    return await submit_text(ctx, text, fmt, idempotency_key, created_by=by)


async def submit_text(
    ctx: ApiContext,
    text: str,
    fmt: str | None,
    idempotency_key: str | None,
    *,
    created_by: str | None = None,
    inputs: dict[str, Any] | None = None,
) -> SubmitResponse:
    """Validate and store a definition text, and create a pending execution of it: the
    submit verb, whatever body shape the definition came in (the compatibility surfaces).
    ``inputs``: those a start triggers it with next, refused before anything is stored."""
    limit = ctx.engine.definition_limits.max_bytes
    if len(text) > limit and len(text.encode("utf-8")) > limit:
        raise _too_large(limit)
    if len(text) <= _INLINE_DEFINITION_CHARS:
        loaded = _load(text, fmt, ctx)  # well under a millisecond: less than a thread hop
    else:  # parsing and validating a large definition takes a while: keep the loop free
        loaded = await asyncio.to_thread(_load, text, fmt, ctx)
    if inputs is not None:
        check_inputs(loaded.spec, inputs)  # every problem listed; nothing stored
    definition = await ctx.engine.submit(loaded, created_by=created_by)
    record, created = await ctx.engine.create_execution(
        definition.id, idempotency_key=idempotency_key
    )
    _check_same_definition(record.definition_id, definition)
    if created:
        ctx.metrics.execution_created()
    return SubmitResponse(
        workflow_definition_id=definition.id,
        execution_id=record.id,
        name=definition.name,
        version=definition.version,
        status=execution_state(record.status),
        message="Workflow submitted successfully",
        warnings=loaded.warnings,
    )


def _check_same_definition(definition_id: str, definition: DefinitionRecord) -> None:
    if definition_id != definition.id:
        raise ApiProblem(
            409,
            "this Idempotency-Key was already used for an execution of another definition",
            slug="idempotency-conflict",
        )


TriggerBody = Annotated[TriggerRequest | None, Body()]


@router.post(
    "/workflow/trigger/{execution_id}",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE_JSON,
    responses=error_responses(400, 404, 409, 415),
    summary="Start a pending execution with input params and node config overrides",
)
@direct
async def trigger_workflow(
    execution_id: str,
    request: Request,
    body: TriggerBody = None,
    idempotency_key: IdempotencyKey = None,
) -> ActionResponse:
    return await trigger(context(request), execution_id, body, idempotency_key)


async def trigger(
    ctx: ApiContext, execution_id: str, body: TriggerRequest | None, idempotency_key: str | None
) -> ActionResponse:
    """Start a pending execution: the trigger verb, whichever path it came by."""
    parts = StartParts() if body is None else start_parts(*body_fields(body))
    inputs, overrides = parts.inputs, parts.overrides
    if parts.issues:  # misshapen parts: named with every other problem (404 first)
        record = await ctx.engine.reads.execution(execution_id)
        parts.inputs = {**record.inputs, **inputs}
        await refuse(ctx.engine, record.definition_id, parts)
    try:
        await ctx.engine.trigger(
            execution_id, inputs, overrides, correlation_id=current_request_id()
        )
    except InvalidTransition:
        if idempotency_key is None:
            raise
        record = await ctx.engine.reads.execution(execution_id)
        untouched = record.owner is None and record.correlation_id is None
        if record.status is ExecutionStatus.PENDING and untouched:
            # Neither claimed (embedded) nor marked triggered (scale-out): nobody triggered
            # it, so this is not a repeat of a trigger that happened.
            raise
        # Started, or being started by a trigger that won the race (another server
        # process, or this one) and owns it: the repeat answers that start.
        return ActionResponse(
            execution_id=execution_id,
            status=execution_state(record.status),
            message="Workflow was already started",
        )
    return await started_answer(ctx.engine, execution_id)


@router.get(
    "/workflows/{execution_id}",
    response_model=ExecutionDetail,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="An execution's status, node states, attempts, errors and timings",
)
@direct
async def get_workflow(
    execution_id: str,
    request: Request,
    include_outputs: Annotated[bool, Query(description="include node outputs")] = True,
) -> Any:
    ctx = context(request)
    return await workflow_detail(ctx, disclosure_of(request), execution_id, include_outputs)


async def workflow_detail(
    ctx: ApiContext, caller: Disclosure, execution_id: str, include_outputs: bool = True
) -> Any:
    """An execution's detail as ``caller`` may see it (a response when without outputs)."""
    record, result = await ctx.engine.status(execution_id)
    progress = ctx.engine.node_progress(execution_id)
    if (
        ctx.redis is not None
        and not ctx.engine.drives
        and record.status not in FINAL_EXECUTION_STATES
    ):
        progress = await ctx.redis.node_progress(execution_id)  # maps run in workers
    detail = execution_detail(
        record,
        result,
        include_outputs=include_outputs,
        progress=progress,
        children=await child_progress(ctx.engine, result),
        view=await caller.execution(record),
    )
    if include_outputs:
        return detail
    return JSONResponse(detail.model_dump(mode="json", exclude={"nodes": {"__all__": {"output"}}}))


@router.get(
    "/workflows/{execution_id}/results",
    response_model=ResultsResponse,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="An execution's result (reference 003 shape)",
)
async def get_results(execution_id: str, request: Request) -> ResultsResponse:
    ctx, caller = context(request), disclosure_of(request)
    record, result = await ctx.engine.status(execution_id)
    return results_response(result, await caller.execution(record))


def _at(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


@router.get(
    "/stats/executions",
    response_model=ExecutionCounts,
    dependencies=VIEW,
    responses=error_responses(),
    summary="How many executions match the filters of GET /v1/workflows, by state",
)
async def count_workflows(
    ctx: Ctx,
    status: StatusQuery = None,
    workflow: Workflow = None,
    definition_id: str | None = None,
    created_after: After = None,
    created_before: Before = None,
    id_prefix: IdPrefix = None,
    id_suffix: IdSuffix = None,
    trigger: Trigger = None,
    buckets: Annotated[
        int | None,
        Query(
            ge=1,
            le=500,
            description="also count by state over time, in this many equal spans from"
            " created_after (default: a day before created_before) to created_before"
            " (default: now)",
        ),
    ] = None,
) -> ExecutionCounts:
    flt = execution_filter(
        status,
        workflow,
        definition_id,
        created_after,
        created_before,
        id_prefix,
        id_suffix,
        trigger,
    )
    counts = await ctx.engine.count_executions(flt)
    by_status = {execution_state(state): n for state, n in counts.items() if n}
    answer = ExecutionCounts(total=sum(by_status.values()), by_status=by_status)
    if buckets is not None:
        end = flt.created_before if flt.created_before is not None else time.time()
        start = flt.created_after if flt.created_after is not None else end - 86400
        # An empty range (as the list, where it lists nothing) has no span to count in.
        count = buckets if end > start else 0
        width = (end - start) / buckets if count else 0.0
        series = (
            await ctx.engine.count_executions_over_time(flt, start, width, count) if count else {}
        )
        answer.series = ExecutionSeries(
            start=_at(start),
            end=_at(end),
            bucket_seconds=width,
            buckets=[
                CountBucket(
                    start=_at(start + i * width),
                    by_status={execution_state(s): n for s, n in series.get(i, {}).items() if n},
                )
                for i in range(count)
            ],
        )
    return answer


@router.post(
    "/workflow/validate",
    response_model=ValidationReport,
    dependencies=VIEW,
    responses=error_responses(400, 413, 415, 422),
    openapi_extra={"requestBody": _DEFINITION_BODY},
    summary="Validate a definition without storing it (errors name their line)",
)
async def validate_workflow(request: Request, ctx: Ctx) -> ValidationReport:
    fmt = _format_of(request)
    raw = await _definition_body(request, ctx.engine.definition_limits.max_bytes)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        issue = DefinitionIssue("the body is not UTF-8 text", code="encoding")
        raise DefinitionError([issue], source="request body") from None
    loaded = await asyncio.to_thread(_load, text, fmt, ctx)
    return ValidationReport(
        name=loaded.spec.name,
        version=loaded.spec.version,
        nodes=len(loaded.spec.dag.nodes),
        warnings=loaded.warnings,
    )


@router.get(
    "/workflows",
    response_model=ExecutionPage,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="List executions, newest first",
)
async def list_workflows(
    ctx: Ctx,
    status: StatusQuery = None,
    workflow: Workflow = None,
    definition_id: str | None = None,
    created_after: After = None,
    created_before: Before = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[
        str | None,
        Query(pattern=CURSOR_PATTERN, description="next_cursor of the previous page"),
    ] = None,
    id_prefix: IdPrefix = None,
    id_suffix: IdSuffix = None,
    trigger: Trigger = None,
) -> ExecutionPage:
    flt = execution_filter(
        status,
        workflow,
        definition_id,
        created_after,
        created_before,
        id_prefix,
        id_suffix,
        trigger,
    )
    if cursor is not None:
        try:
            rules.decode_cursor(cursor)
        except ExecutionError:
            # Well formed, but no page starts there: like an unknown id, it is not found.
            raise ApiProblem(
                404, "no page starts at this cursor: it is not one this API gave out",
                slug="unknown-cursor",
            ) from None  # fmt: skip
    flt.cursor, flt.limit = cursor, limit
    records, next_cursor = await ctx.engine.list_executions(flt)
    definitions: dict[str, DefinitionRecord | None] = {}
    items = []
    for record in records:
        if record.definition_id not in definitions:
            try:
                definitions[record.definition_id] = await ctx.engine.reads.definition(
                    record.definition_id
                )
            except ExecutionError:
                definitions[record.definition_id] = None
        items.append(execution_summary(record, definitions[record.definition_id]))
    return ExecutionPage(items=items, next_cursor=next_cursor)
