"""How ``Client`` puts a call on the wire: one request (sent again after a 429), or a followed
event stream (resumed after a broken connection). Blocking; ``async_transport.py`` is the
same for ``AsyncClient``."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterable
from typing import TypeVar

import httpx

from orchestrion.client.calls import Call, transport_error
from orchestrion.client.errors import error_from_response
from orchestrion.client.retry import RateLimitRetry
from orchestrion.client.sse import ServerSentEvent, SseDecoder
from orchestrion.client.stream_resume import StreamResume

__all__ = ["read_events", "send"]

T = TypeVar("T")


def send(http: httpx.Client, call: Call[T], base_url: str, rate_limit: RateLimitRetry) -> T:
    """Send ``call`` and read its answer; a rate-limited one again after its Retry-After."""
    attempt = 0
    while True:
        try:
            response = http.request(
                call.method,
                call.path,
                params=tuple(call.params) or None,
                content=call.content,
                headers=call.headers or None,
            )
        except httpx.TransportError as exc:
            what = f"{call.method} {call.path}"
            raise transport_error(exc, base_url, what) from exc
        delay = rate_limit.delay(response, attempt)
        if delay is None:
            return call.handle(response)
        attempt += 1
        time.sleep(delay)


def read_events(
    http: httpx.Client,
    timeout: float,
    resume: StreamResume,
    params: Iterable[tuple[str, str]],
    parse: Callable[[ServerSentEvent], T | None],
) -> Generator[T, None, None]:
    """The events of the stream at ``resume.path`` that ``parse`` makes something of, until
    the server ends it."""
    while True:
        try:
            with http.stream(
                "GET",
                resume.path,
                params=tuple(params),
                headers=resume.headers(),
                timeout=resume.timeout(timeout),
            ) as response:
                if response.is_error:
                    response.read()
                    raise error_from_response(response)
                decoder = SseDecoder()
                for line in response.iter_lines():
                    sse = decoder.feed(line)
                    if sse is None:
                        continue
                    resume.read(decoder)
                    event = parse(sse)
                    if event is not None:
                        resume.delivered()
                        yield event
                    resume.check_deadline()
            return
        except httpx.TransportError as exc:
            time.sleep(resume.broken(exc))
