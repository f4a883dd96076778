"""A server that answers 429 or 503 with ``Retry-After`` (seconds) is given at least that
long before the node's next attempt, up to its retry policy's ``max_delay``; a value that is
no number of seconds one can wait leaves the policy's delay as it is. Real HTTP server, real
engine on a SQLite file; the delay read is the one the journal recorded."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrion import Engine
from orchestrion.core.events import ErrorInfo


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
            self.send_header("Retry-After", retry_after.replace("%20", " "))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def busy_server() -> Iterator[str]:
    handler = type("Busy", (_Busy,), {"seen": {}})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("status", "retry_after", "max_delay", "expected"),
    [
        (429, "1", "5s", 1.0),  # asked for a second: waits a second, not the policy's 0.05
        (503, "60", "300ms", 0.3),  # asked for a minute: the policy's max_delay bounds it
        (429, "0", "5s", 0.05),  # asked for less than the policy waits: the policy's delay
        (429, "inf", "5s", 0.05),  # no wait anyone can keep: the policy's delay
        (429, "nan", "5s", 0.05),
        (503, "Wed,%2021%20Oct%202015%2007:28:00%20GMT", "5s", 0.05),  # a date: the policy's
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
