"""Helpers of the event sink tests: a workflow with its journal, and a local webhook receiver
that records what it is sent and answers the statuses it is told to (real HTTP, a thread)."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["EXPECTED", "TWO_NODES", "Receiver"]

TWO_NODES = {
    "name": "pair",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}
EXPECTED = [
    "execution.started",
    "node.queued",
    "node.started",
    "node.completed",
    "node.queued",
    "node.started",
    "node.completed",
    "execution.completed",
]


class Receiver:
    """A loopback HTTP server that records POSTs and answers ``statuses`` in turn (then
    200)."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.received: list[dict[str, Any]] = []
        self.statuses = list(statuses or [])
        self.delay = delay
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(receiver.delay)
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                if status == 200:
                    receiver.received.append({"headers": dict(self.headers), "body": body})
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,))
        self.thread.daemon = True
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def events(self) -> list[dict[str, Any]]:
        return [json.loads(r["body"]) for r in self.received]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
