"""How many event streams (Server-Sent Events) may be open at once, and for how long.

Every open stream wakes at each commit and sends what it brought (the streams of one execution
share one read of the store, but each encodes and sends its own copy), so streams cost the
whole server, not only whoever holds them. ``ORCHESTRION_SSE_MAX_STREAMS_PER_CALLER`` bounds
them per API key (per client address for a caller without one, as every caller is when the API
is open), ``ORCHESTRION_SSE_MAX_STREAMS`` per process. One more is refused before the stream starts:
429 over the caller's limit, 503 over the process's, each with ``Retry-After`` and naming the
setting. ``orchestrion_event_streams_open`` reports how many are open.

A stream is authorized when it opens, but it must not outlive that authorization: one signed
in by a session cookie ends when the session does (signed out in any process, or expired),
checked each time the stream wakes (``OpenStream.alive``). A bearer key's stream needs no
such check: the keys of a process do not change while it runs, and its streams end with it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

from fastapi.responses import StreamingResponse
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from orchestrion.api.auth import Caller, caller_of, identifier
from orchestrion.api.client_address import address_bucket
from orchestrion.api.context import ApiContext
from orchestrion.api.problems import ApiProblem
from orchestrion.api.sessions import SessionBook, Ticket

__all__ = ["OpenStream", "StreamSlots", "open_stream"]

_RETRY_AFTER = "5"  # seconds: streams end as viewers close their pages
_SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class StreamSlots:
    """The streams open in this process, per holder (an API key's bucket or an address)."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total = total  # 0: no limit
        self.per_caller = per_caller
        self._held: dict[str, int] = {}
        self._open = 0

    @property
    def open(self) -> int:
        return self._open

    def held_by(self, holder: str) -> int:
        return self._held.get(holder, 0)

    def take(self, holder: str) -> None:
        """Count one more stream of ``holder``, or raise the 429/503 that refuses it."""
        held = self._held.get(holder, 0)
        if self.per_caller and held >= self.per_caller:
            raise ApiProblem(
                429,
                f"too many open event streams: {held} are open for this caller, the limit is"
                f" {self.per_caller} (ORCHESTRION_SSE_MAX_STREAMS_PER_CALLER); close one first",
                slug="too-many-streams",
                headers={"Retry-After": _RETRY_AFTER},
            )
        if self.total and self._open >= self.total:
            raise ApiProblem(
                503,
                f"the server holds its limit of {self.total} open event streams"
                " (ORCHESTRION_SSE_MAX_STREAMS); retry later",
                slug="too-many-streams",
                headers={"Retry-After": _RETRY_AFTER},
            )
        self._held[holder] = held + 1
        self._open += 1

    def give_back(self, holder: str) -> None:
        held = self._held.get(holder, 0) - 1
        if held <= 0:
            self._held.pop(holder, None)  # bounded by the streams open, not by callers seen
        else:
            self._held[holder] = held
        self._open -= 1


class OpenStream:
    """One stream's slot, and whether its caller may still read it."""

    def __init__(self, slots: StreamSlots, holder: str, ticket: Ticket | None, book: SessionBook):
        self._slots = slots
        self._holder = holder
        self._ticket = ticket
        self._book = book
        self._held = True

    def alive(self) -> bool:
        """False once the session that opened the stream has ended."""
        ticket = self._ticket
        if ticket is None:
            return True
        return time.time() < ticket.expires and not self._book.ended(ticket)

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.give_back(self._holder)

    def response(self, body: AsyncIterator[str]) -> StreamingResponse:
        """The ``text/event-stream`` answer sending ``body``; the slot is given back when it
        ends, however it ends (finished, client gone, server stopping)."""
        return _SlotResponse(self, body)


class _SlotResponse(StreamingResponse):
    def __init__(self, stream: OpenStream, body: AsyncIterator[str]) -> None:
        super().__init__(body, media_type="text/event-stream", headers=_SSE_HEADERS)
        self._stream = stream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._stream.release()


def _holder(caller: Caller) -> str:
    return caller.bucket or "address:" + address_bucket(caller.address)


def open_stream(request: Request, ctx: ApiContext) -> OpenStream:
    """Take a stream slot for the request's caller (429/503 when none is left).

    Call it last, once the route has checked everything else: the slot is given back by the
    response, which a route that raises never returns."""
    caller = caller_of(request.scope, ctx.settings)
    holder = _holder(caller)
    ctx.streams.take(holder)
    book = identifier(ctx.settings).sessions
    return OpenStream(ctx.streams, holder, caller.ticket, book)
