"""A server that answers 429 or 503 with ``Retry-After`` (seconds, or an HTTP date) is given
at least that long before the node's next attempt, up to its retry policy's ``max_delay``; a
date already past asks for no wait, and a value that is neither a number of seconds one can
wait nor a date leaves the policy's delay as it is. Real HTTP server, real engine on a SQLite
file; the delay read is the one the journal recorded."""

from __future__ import annotations

import time
from collections.abc import Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from loopback_listener import serving
from orchestrion import Engine
from orchestrion.core.events import ErrorInfo, retry_after_seconds


class _Busy(BaseHTTPRequestHandler):
    """Answers the first request of each path with its status and Retry-After, then 200."""

    seen: dict[str, int]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        _, status, retry_after = self.path.split("/", 2)
        count = self.seen.get(self.path, 0) + 1
        self.seen[self.path] = count
        if count == 1:
            self.send_response(int(status))
            self.send_header("Retry-After", _header(retry_after))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _header(asked: str) -> str:
    """``date+N`` / ``date-N``: the HTTP date N seconds from now; else the text as sent."""
    if asked.startswith("date"):
        return formatdate(time.time() + float(asked[4:]), usegmt=True)
    return asked.replace("%20", " ")


@pytest.fixture
def busy_server() -> Iterator[str]:
    with serving(type("Busy", (_Busy,), {"seen": {}})) as url:
        yield url


@pytest.mark.parametrize(
    ("status", "retry_after", "max_delay", "expected"),
    [
        (429, "1", "5s", 1.0),  # asked for a second: waits a second, not the policy's 0.05
        (503, "60", "300ms", 0.3),  # asked for a minute: the policy's max_delay bounds it
        (429, "0", "5s", 0.05),  # asked for less than the policy waits: the policy's delay
        (429, "inf", "5s", 0.05),  # no wait anyone can keep: the policy's delay
        (429, "nan", "5s", 0.05),
        (503, "Wed,%2021%20Oct%202015%2007:28:00%20GMT", "5s", 0.05),  # a past date: no wait
        (429, "date-3600", "5s", 0.05),  # an hour ago: no wait, the policy's delay
        (429, "date+600", "300ms", 0.3),  # ten minutes from now: up to max_delay
        (503, "date+600", "2s", 2.0),
        (429, "soon", "5s", 0.05),  # neither seconds nor a date: ignored
        (429, "Wed,%2032%20Oct%202015%2007:28:00%20GMT", "5s", 0.05),
    ],
)
async def test_retry_after_sets_the_least_wait_up_to_max_delay(
    tmp_path: Path, busy_server: str, status: int, retry_after: str, max_delay: str, expected: float
) -> None:
    workflow = {
        "name": "busy",
        "dag": {
            "nodes": [
                {
                    "id": "call",
                    "handler": "http",
                    "config": {"url": f"{busy_server}/{status}/{retry_after}"},
                    "retry": {
                        "max_attempts": 2,
                        "initial_delay": "50ms",
                        "max_delay": max_delay,
                        "jitter": "none",
                    },
                }
            ]
        },
    }
    async with Engine(f"sqlite:///{tmp_path / 'busy.db'}") as engine:
        result = await engine.run(workflow)
        assert result.ok, result
        events = await engine.store.list_events(result.execution_id)
    [scheduled] = [e for e in events if e.type == "node.retry_scheduled"]
    assert scheduled.data["delay"] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("recorded", "read"),
    [(2.5, 2.5), (3, 3.0), (None, None), ("7", None), (True, None), (-1, None)],
)
def test_a_recorded_retry_after_is_read_back_only_as_seconds(recorded: Any, read: Any) -> None:
    data = {"category": "rate_limited", "message": "429", "transient": True}
    if recorded is not None:
        data["retry_after"] = recorded
    assert ErrorInfo.from_dict(data).retry_after == read
    kept = ErrorInfo("rate_limited", "429", True, retry_after=read).to_dict()
    assert kept.get("retry_after") == read


async def test_a_retry_after_date_is_waited_for_until_then(
    tmp_path: Path, busy_server: str
) -> None:
    """A date two seconds ahead is a wait of (a little under) two seconds, not the policy's
    50 ms: the date is read when the answer arrives, whole seconds as HTTP dates are."""
    workflow = {
        "name": "busy",
        "dag": {
            "nodes": [
                {
                    "id": "call",
                    "handler": "http",
                    "config": {"url": f"{busy_server}/429/date+2"},
                    "retry": {"max_attempts": 2, "initial_delay": "50ms", "jitter": "none"},
                }
            ]
        },
    }
    async with Engine(f"sqlite:///{tmp_path / 'busy.db'}") as engine:
        started = time.monotonic()
        result = await engine.run(workflow)
        took = time.monotonic() - started
        assert result.ok, result
        events = await engine.store.list_events(result.execution_id)
    [scheduled] = [e for e in events if e.type == "node.retry_scheduled"]
    assert 0.9 <= scheduled.data["delay"] <= 2.0
    assert took >= 0.9


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),  # no negative wait
        ("Wed, 21 Oct 2015 07:28:40 GMT", 10.0),
        ("Wednesday, 21-Oct-15 07:28:40 GMT", 10.0),  # RFC 850, which RFC 9110 still reads
        ("Wed Oct 21 07:28:40 2015", 10.0),  # asctime, in GMT
        ("Wed, 21 Oct 2015 07:28:40 -0000", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),  # past: no wait
        ("", None),
        (None, None),
        ("soon", None),
        ("inf", None),
        ("nan", None),
        ("Wed, 32 Oct 2015 07:28:00 GMT", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(
    header: str | None, seconds: float | None
) -> None:
    assert retry_after_seconds(header, now=1445412510.0) == seconds


class _Limited(BaseHTTPRequestHandler):
    """Answers its first request 429 with the Retry-After ``header``, then an empty page."""

    header = ""
    seen: list[float]

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(time.monotonic())
        if len(self.seen) == 1:
            self.send_response(429)
            self.send_header("Retry-After", _header(self.header))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"items": [], "next_cursor": null}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize(("header", "least", "most"), [("date+2", 0.9, 2.8), ("date-60", 0, 0.9)])
def test_the_client_waits_until_a_retry_after_date(header: str, least: float, most: float) -> None:
    """The Python client (and so the command line's ``--server``) sends a rate-limited call
    again once the date a server gave has come, at once for one already past."""
    from orchestrion.client import Client

    handler = type("Limited", (_Limited,), {"header": header, "seen": []})
    with serving(handler) as url, Client(url) as client:
        assert client.list_executions().items == []
    first, second = handler.seen
    assert least <= second - first <= most
