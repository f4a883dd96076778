"""A Server-Sent Events decoder with no I/O: fed one line at a time, it hands back events.

It follows the WHATWG event-stream rules the API relies on: ``id:``, ``event:``, ``data:``
(several lines joined by newlines) and ``retry:`` fields, a blank line ends an event, lines
starting with ``:`` are comments (the server's ``: keep-alive``), and the last ``id`` seen is
remembered for ``Last-Event-ID`` when the stream is resumed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from orchestrion.client.log_models import LogLine
from orchestrion.client.models import Event

__all__ = ["ServerSentEvent", "SseDecoder", "event_from_sse", "log_line_from_sse"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One decoded event: ``event`` defaults to ``message``, ``data`` lines joined by ``\\n``."""

    event: str = "message"
    data: str = ""
    id: str | None = None
    retry: int | None = None


class SseDecoder:
    """Turns the lines of an event stream into ``ServerSentEvent`` objects."""

    def __init__(self) -> None:
        self.last_event_id: str | None = None
        self.retry: int | None = None
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None
        self._dirty = False

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its line break); return an event when a blank line ends one."""
        line = line.rstrip("\r\n")
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
            self._dirty = True
        elif name == "event":
            self._event = value
            self._dirty = True
        elif name == "id":
            if "\0" not in value:
                self._id = value
                self.last_event_id = value
                self._dirty = True
        elif name == "retry" and value.isdigit():
            self.retry = int(value)
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        if not self._dirty:
            return None
        event = ServerSentEvent(
            event=self._event or "message",
            data="\n".join(self._data),
            id=self._id if self._id is not None else self.last_event_id,
            retry=self.retry,
        )
        self._event, self._data, self._id, self._dirty = "", [], None, False
        return event


def event_from_sse(sse: ServerSentEvent) -> Event | None:
    """The journal ``Event`` carried by an SSE event; None for events without a JSON object."""
    if not sse.data:
        return None
    try:
        payload = json.loads(sse.data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or "seq" not in payload:
        return None
    if "type" not in payload:
        payload["type"] = sse.event
    return Event.from_api(payload)


def log_line_from_sse(sse: ServerSentEvent) -> LogLine | None:
    """The node ``LogLine`` carried by an SSE event; None for events without a JSON object."""
    if not sse.data:
        return None
    try:
        payload = json.loads(sse.data)
    except ValueError:
        return None
    if not isinstance(payload, dict) or "seq" not in payload:
        return None
    return LogLine.from_api(payload)
