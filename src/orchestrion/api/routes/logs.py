"""Node logs: the lines node attempts wrote, as pages and as Server-Sent Event streams.

The lines were masked (personal data, secrets) and bounded when they were captured
(``execution/log_capture.py``). A caller without the admin role, with masking on in the
policy, sees them as it sees node outputs (``redaction.py``): the message of a line of a
classified node is replaced whole by ``[masked: <classification>]``, the others are
pattern-masked again with the policy in force.

A stream works as the event streams do (``events.py``): it sends the lines after the last
``seq`` it sent (``Last-Event-ID`` resumes), sleeps until the engine commits something for the
execution or ``sse_poll`` seconds pass, and ends once the execution is final and every line
was sent. A running attempt's lines are committed every half second, so a stream follows
them as they are written.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from orchestrion.api.context import ApiContext
from orchestrion.api.models import LogLineOut, LogPage
from orchestrion.api.problems import error_responses
from orchestrion.api.redaction import Disclosure, ExecutionView, disclosure
from orchestrion.api.routes import VIEW, Ctx
from orchestrion.api.sse_follow import follow
from orchestrion.api.stream_slots import OpenStream, open_stream
from orchestrion.core.states import FINAL_EXECUTION_STATES
from orchestrion.store.base import ExecutionRecord, LogFilter, LogLineRecord

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["logs"])

_BATCH = 500
_MAX_SEQ = 2**63 - 1
_SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `id: <seq>`, `event: log`, `data: <line JSON>`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

Caller = Annotated[Disclosure, Depends(disclosure)]
After = Annotated[int, Query(ge=0, le=_MAX_SEQ, description="only lines with a larger seq")]
Limit = Annotated[int, Query(ge=1, le=1000, description="lines per page")]
Attempt = Annotated[int | None, Query(ge=1, le=1_000_000, description="only this attempt")]
NodeQuery = Annotated[
    str | None, Query(min_length=1, max_length=128, description="only this node's lines")
]
NodeId = Annotated[str, Path(min_length=1, max_length=128)]
LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=_MAX_SEQ,
        description="resume after this seq (wins over after)",
    ),
]


def line_out(line: LogLineRecord, view: ExecutionView) -> LogLineOut:
    """A stored line as ``view`` lets its caller see it."""
    message = line.message
    if view.masker is not None:
        classification = view.level(line.node_id)
        if classification is not None:
            message = f"[masked: {classification}]"
        else:
            message = view.masker.mask_text(message)
    return LogLineOut(
        seq=line.seq,
        node_id=line.node_id,
        attempt=line.attempt,
        at=datetime.fromtimestamp(line.at, UTC),
        level=line.level,
        logger=line.logger,
        message=message,
    )


async def _page(ctx: ApiContext, caller: Disclosure, flt: LogFilter) -> LogPage:
    reads = ctx.engine.reads
    record = await reads.execution(flt.execution_id)  # 404 for an unknown id
    view = await caller.execution(record)
    lines = await reads.node_logs(flt)
    if not lines and flt.node_id is not None:  # none yet, or no such node (404)?
        await reads.check_node(record, flt.node_id)
    return LogPage(
        items=[line_out(line, view) for line in lines],
        next_after=lines[-1].seq if lines else flt.after_seq,
    )


@router.get(
    "/workflows/{execution_id}/logs",
    response_model=LogPage,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="The log lines an execution's node attempts wrote, oldest first",
)
async def execution_logs(
    execution_id: str,
    ctx: Ctx,
    caller: Caller,
    node: NodeQuery = None,
    attempt: Attempt = None,
    after: After = 0,
    limit: Limit = 100,
) -> LogPage:
    return await _page(ctx, caller, LogFilter(execution_id, node, attempt, after, limit))


@router.get(
    "/workflows/{execution_id}/nodes/{node_id}/logs",
    response_model=LogPage,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="The log lines a node's attempts wrote, oldest first",
)
async def node_logs(
    execution_id: str,
    node_id: NodeId,
    ctx: Ctx,
    caller: Caller,
    attempt: Attempt = None,
    after: After = 0,
    limit: Limit = 100,
) -> LogPage:
    return await _page(ctx, caller, LogFilter(execution_id, node_id, attempt, after, limit))


def _sse(line: LogLineRecord, view: ExecutionView) -> str:
    return f"id: {line.seq}\nevent: log\ndata: {line_out(line, view).model_dump_json()}\n\n"


async def _follow(
    ctx: ApiContext, stream: OpenStream, caller: Disclosure, view: ExecutionView, flt: LogFilter
) -> AsyncIterator[str]:
    reads = ctx.engine.reads
    shown = [view]

    async def page(after: int) -> tuple[ExecutionRecord, list[LogLineRecord]]:
        record = await reads.execution(flt.execution_id)  # read before the lines
        wanted = LogFilter(flt.execution_id, flt.node_id, flt.attempt, after, _BATCH)
        return record, await reads.node_logs(wanted)

    async def read(after: int) -> tuple[bool, list[LogLineRecord]]:
        # The streams of this execution woken by one commit read the same page once.
        hub, key = ctx.hub, flt.execution_id
        record, lines = await hub.shared(
            key, ("logs", flt.node_id, flt.attempt, after), lambda: page(after)
        )
        if lines and caller.masker is not None:  # a child started since may classify nodes
            caller.fresh()
            view = functools.partial(caller.execution, record)
            shown[0] = await hub.shared(key, ("view", key), view)
        return record.status in FINAL_EXECUTION_STATES, lines

    with ctx.hub.watch(flt.execution_id):
        async for chunk in follow(
            ctx,
            flt.execution_id,
            flt.after_seq,
            _BATCH,
            read,
            lambda line: _sse(line, shown[0]),
            "log",
            stream.alive,
        ):
            yield chunk


async def _stream(
    request: Request,
    ctx: ApiContext,
    caller: Disclosure,
    flt: LogFilter,
    last_event_id: int | None,
) -> StreamingResponse:
    reads = ctx.engine.reads
    record = await reads.execution(flt.execution_id)  # 404 for an unknown id
    if flt.node_id is not None:  # refused now, not a stream that ends with nothing
        await reads.check_node(record, flt.node_id)
    view = await caller.execution(record)
    if last_event_id is not None:
        flt = LogFilter(flt.execution_id, flt.node_id, flt.attempt, last_event_id, flt.limit)
    stream = open_stream(request, ctx)
    return stream.response(_follow(ctx, stream, caller, view, flt))


@router.get(
    "/workflows/{execution_id}/logs/stream",
    response_class=StreamingResponse,
    dependencies=VIEW,
    responses={**_SSE_RESPONSES, **error_responses(404)},
    summary="Stream an execution's log lines (ends once it is final and all were sent)",
)
async def stream_execution_logs(
    request: Request,
    execution_id: str,
    ctx: Ctx,
    caller: Caller,
    node: NodeQuery = None,
    attempt: Attempt = None,
    after: After = 0,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    flt = LogFilter(execution_id, node, attempt, after)
    return await _stream(request, ctx, caller, flt, last_event_id)


@router.get(
    "/workflows/{execution_id}/nodes/{node_id}/logs/stream",
    response_class=StreamingResponse,
    dependencies=VIEW,
    responses={**_SSE_RESPONSES, **error_responses(404)},
    summary="Stream a node's log lines (ends once the execution is final and all were sent)",
)
async def stream_node_logs(
    request: Request,
    execution_id: str,
    node_id: NodeId,
    ctx: Ctx,
    caller: Caller,
    attempt: Attempt = None,
    after: After = 0,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    flt = LogFilter(execution_id, node_id, attempt, after)
    return await _stream(request, ctx, caller, flt, last_event_id)
