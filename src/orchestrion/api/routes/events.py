"""The event journal: paged lists, and Server-Sent Event streams resumable by Last-Event-ID.

A stream reads the journal after the last ``seq`` it sent, sends what it finds, then sleeps
until the engine commits something for it (``EventHub``; in scale-out mode orchestrators
announce their commits through Redis), or ``sse_poll`` seconds pass (events written by another
process on the same database, with no Redis, wake no hub), sending ``: keep-alive`` every
``sse_keepalive`` seconds of silence. A per-execution stream ends once the execution is final
and every event before that has been sent.

For callers without the admin role, event data is masked as its execution's view says
(``redaction.py``): a classified node's error text and handler data (an approval's message)
are hidden, the rest pattern-masked; events never carry node outputs. A page of events reads
the view of each execution it names, again for each page of a stream (children may start).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import Field

from orchestrion.api.context import ApiContext
from orchestrion.api.convert import event_out
from orchestrion.api.models import EventOut, EventPage
from orchestrion.api.params import EVENT_TYPE_PATTERN
from orchestrion.api.problems import error_responses
from orchestrion.api.redaction import Disclosure, ExecutionView, disclosure
from orchestrion.api.routes import VIEW, Ctx
from orchestrion.api.sse_follow import follow
from orchestrion.api.stream_slots import OpenStream, open_stream
from orchestrion.core.states import FINAL_EXECUTION_STATES
from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import EventRecord, ExecutionRecord

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1", tags=["events"])

_BATCH = 500
_SSE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events: `id: <seq>`, `event: <type>`, `data: <event JSON>`",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}

Caller = Annotated[Disclosure, Depends(disclosure)]

_MAX_SEQ = 2**63 - 1  # what the journal's integer column holds
After = Annotated[int, Query(ge=0, le=_MAX_SEQ, description="only events with a larger seq")]
Limit = Annotated[int, Query(ge=1, le=1000)]
EventType = Annotated[str, Field(pattern=EVENT_TYPE_PATTERN, max_length=64)]
Types = Annotated[
    list[EventType] | None,
    Query(description="only these event types (repeatable), e.g. node.completed"),
]
LastEventId = Annotated[
    int | None,
    Header(
        alias="Last-Event-ID",
        ge=0,
        le=_MAX_SEQ,
        description="resume after this seq (wins over after)",
    ),
]


class _Views:
    """The view of each execution named by a page of events, for one caller."""

    def __init__(
        self, ctx: ApiContext, caller: Disclosure, *, streamed: bool = False, key: str | None = None
    ) -> None:
        self._ctx = ctx
        self._caller = caller
        self._streamed = streamed  # a stream's: the streams of its hub ``key`` share the views
        self._key = key
        self._records: dict[str, ExecutionRecord | None] = {}
        self._page: dict[str, ExecutionView] = {}

    async def load(self, events: list[EventRecord]) -> None:
        """Find the views ``events`` need (before encoding them with ``of``)."""
        self._page = {}
        caller = self._caller
        masker = caller.masker
        if masker is None or not events:
            return
        caller.fresh()
        for execution_id in dict.fromkeys(event.execution_id for event in events):
            if execution_id not in self._records:
                if len(self._records) > 10_000:
                    self._records.clear()
                try:
                    found = await self._ctx.engine.reads.execution(execution_id)
                except ExecutionNotFound:  # erased (its events go with it): pattern-masked
                    found = None
                self._records[execution_id] = found
            record = self._records[execution_id]
            if record is None:
                self._page[execution_id] = ExecutionView(masker)
                continue
            # Definitions are cached: only executions with a parent or a child cost reads.
            # Every caller who is not shown everything gets the same view of an execution.
            view = functools.partial(caller.execution, record)
            if self._streamed:
                self._page[execution_id] = await self._ctx.hub.shared(
                    self._key, ("view", execution_id), view
                )
            else:
                self._page[execution_id] = await view()

    def sse(self, event: EventRecord) -> str:
        """``event`` as a Server-Sent Event. The streams of one key encode an event once for
        the callers shown everything, and once per shared view for the others."""
        if not self._streamed:
            return _sse_text(self.of(event), event)
        shown: ExecutionView | None = None
        if self._caller.masker is not None:
            shown = self._page.get(event.execution_id)
            if shown is None:
                return _sse_text(self.of(event), event)
        hub = self._ctx.hub
        what = ("sse", event.seq, None if shown is None else id(shown))
        found = hub.kept(self._key, what)
        if found is not None and found[0] is shown:  # the very view: never a reused id
            text: str = found[1]
            return text
        text = _sse_text(self.of(event), event)
        hub.keep(self._key, what, (shown, text))
        return text

    def of(self, event: EventRecord) -> EventOut:
        if self._caller.masker is None:
            return event_out(event)
        view = self._page.get(event.execution_id)
        return event_out(event, ExecutionView(self._caller.masker) if view is None else view)


async def _page(
    events: list[EventRecord], after: int, ctx: ApiContext, caller: Disclosure
) -> EventPage:
    views = _Views(ctx, caller)
    await views.load(events)
    return EventPage(
        items=[views.of(event) for event in events],
        next_after=events[-1].seq if events else after,
    )


@router.get(
    "/workflows/{execution_id}/events",
    response_model=EventPage,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="An execution's events, oldest first",
)
async def execution_events(
    execution_id: str, ctx: Ctx, caller: Caller, after: After = 0, limit: Limit = 100
) -> EventPage:
    reads = ctx.engine.reads
    await reads.execution(execution_id)  # 404 for an unknown id, not an empty list
    return await _page(await reads.events(execution_id, after, limit), after, ctx, caller)


@router.get(
    "/events",
    response_model=EventPage,
    dependencies=VIEW,
    responses=error_responses(),
    summary="Events of every execution, oldest first",
)
async def all_events(
    ctx: Ctx, caller: Caller, after: After = 0, limit: Limit = 100, type: Types = None
) -> EventPage:
    events = await ctx.engine.reads.events(None, after, limit, type or None)
    return await _page(events, after, ctx, caller)


def _sse_text(shown: EventOut, event: EventRecord) -> str:
    return f"id: {event.seq}\nevent: {event.type}\ndata: {shown.model_dump_json()}\n\n"


async def _stream(
    ctx: ApiContext,
    stream: OpenStream,
    execution_id: str | None,
    after: int,
    types: list[str] | None,
    caller: Disclosure,
) -> AsyncIterator[str]:
    with ctx.hub.watch(execution_id):
        async for chunk in _journal(ctx, stream, execution_id, after, types, caller):
            yield chunk


async def _journal(
    ctx: ApiContext,
    stream: OpenStream,
    execution_id: str | None,
    after: int,
    types: list[str] | None,
    caller: Disclosure,
) -> AsyncIterator[str]:
    reads = ctx.engine.reads
    views = _Views(ctx, caller, streamed=True, key=execution_id)

    async def page(since: int) -> tuple[bool, list[EventRecord]]:
        final = False
        if execution_id is not None:
            record = await reads.execution(execution_id)
            final = record.status in FINAL_EXECUTION_STATES  # read before the events
        return final, await reads.events(execution_id, since, _BATCH, types)

    shape = tuple(types) if types else None

    async def read(since: int) -> tuple[bool, list[EventRecord]]:
        # The streams of this key woken by one commit read the same page once.
        final, events = await ctx.hub.shared(
            execution_id, ("events", since, shape), lambda: page(since)
        )
        await views.load(events)
        return final, events

    async for chunk in follow(
        ctx, execution_id, after, _BATCH, read, views.sse, "event", stream.alive
    ):
        yield chunk


@router.get(
    "/workflows/{execution_id}/events/stream",
    response_class=StreamingResponse,
    dependencies=VIEW,
    responses={**_SSE_RESPONSES, **error_responses(404)},
    summary="Stream an execution's events (ends after its final event)",
)
async def stream_execution_events(
    execution_id: str,
    request: Request,
    ctx: Ctx,
    caller: Caller,
    after: After = 0,
    last_event_id: LastEventId = None,
) -> StreamingResponse:
    await ctx.engine.reads.execution(execution_id)
    start = last_event_id if last_event_id is not None else after
    stream = open_stream(request, ctx)
    return stream.response(_stream(ctx, stream, execution_id, start, None, caller))


@router.get(
    "/events/stream",
    response_class=StreamingResponse,
    dependencies=VIEW,
    responses={**_SSE_RESPONSES, **error_responses()},
    summary="Stream the events of every execution",
)
async def stream_all_events(
    request: Request,
    ctx: Ctx,
    caller: Caller,
    after: After = 0,
    type: Types = None,
    last_event_id: LastEventId = None,
    tail: Annotated[
        bool, Query(description="only events committed from now on (after and the past aside)")
    ] = False,
) -> StreamingResponse:
    start = last_event_id if last_event_id is not None else after
    if tail and last_event_id is None:
        start = await ctx.engine.reads.journal_head()
    stream = open_stream(request, ctx)
    return stream.response(_stream(ctx, stream, None, start, type or None, caller))
