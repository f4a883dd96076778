"""Following a Server-Sent Events stream across broken connections, the same for both clients.

``Client`` and ``AsyncClient`` read the stream their own way (blocking or not); what to send
on a reconnect, how long to wait before it, when to give up and when the caller's deadline
has passed is decided here, once.
"""

from __future__ import annotations

import time

import httpx

from orchestrion.client.calls import STREAM_READ_TIMEOUT, stream_headers, transport_error
from orchestrion.client.sse import SseDecoder

__all__ = ["StreamResume"]


class StreamResume:
    """One followed stream: the last event id seen, the reconnect delay the server asked
    for, the connections broken in a row, and the caller's deadline (monotonic)."""

    def __init__(
        self,
        path: str,
        base_url: str,
        last_event_id: str | int | None,
        reconnects: int,
        deadline: float | None,
    ) -> None:
        self.path = path
        self.base_url = base_url
        self.last = last_event_id
        self.reconnects = reconnects
        self.deadline = deadline
        self.failures = 0
        self.delay = 0.5

    def headers(self) -> dict[str, str]:
        """The request headers: resumed after the last event seen."""
        return stream_headers(self.last)

    def timeout(self, connect: float) -> httpx.Timeout:
        """The client's timeout, with reads bounded by the stream's and the deadline."""
        read = STREAM_READ_TIMEOUT
        if self.deadline is not None:
            read = max(0.001, min(read, self.deadline - time.monotonic()))
        return httpx.Timeout(connect, read=read)

    def read(self, decoder: SseDecoder) -> None:
        """An event was decoded: remember its id and the reconnect delay it set."""
        self.last = decoder.last_event_id or self.last
        self.delay = decoder.retry / 1000 if decoder.retry else self.delay

    def delivered(self) -> None:
        """An event reached the caller: the connection works again."""
        self.failures = 0

    def check_deadline(self, cause: BaseException | None = None) -> None:
        """Raise ``TimeoutError`` once the caller's deadline has passed."""
        if self.deadline is not None and time.monotonic() >= self.deadline:
            raise TimeoutError(f"event stream {self.path} still open at the deadline") from cause

    def broken(self, exc: httpx.TransportError) -> float:
        """The connection broke: seconds to wait before the next one, or raise when the
        deadline passed or too many broke in a row."""
        self.check_deadline(exc)
        self.failures += 1
        if self.failures > self.reconnects:
            raise transport_error(exc, self.base_url, f"GET {self.path}") from exc
        return min(self.delay, 5.0)
