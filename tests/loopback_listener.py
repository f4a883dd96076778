"""A loopback HTTP listener for tests: records every request, echoes it back or redirects;
and ``serving``, any request handler of a test on a free loopback port for a while."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Listener", "serve_listener", "serving"]


@dataclass
class Listener:
    """A loopback HTTP server: what it received; it echoes each request back as JSON."""

    server: ThreadingHTTPServer
    received: list[dict[str, Any]] = field(default_factory=list)
    redirect_to: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])


class _Echo(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass

    def _answer(self) -> None:
        listener: Listener = self.server.listener  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        request = {"path": self.path, "headers": dict(self.headers.items()), "body": body}
        listener.received.append(request)
        if listener.redirect_to is not None:
            self.send_response(302)
            self.send_header("Location", listener.redirect_to)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data = json.dumps({"echo": request}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", self.headers.get("Authorization", ""))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer


def serve_listener() -> Iterator[Listener]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    listener = Listener(server)
    server.listener = listener  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield listener
    server.shutdown()
    server.server_close()
    thread.join(5)


@contextmanager
def serving(
    handler: type[BaseHTTPRequestHandler], *, poll: float = 0.5, daemon_threads: bool = False
) -> Iterator[str]:
    """``handler`` answering on a free loopback port, from a thread that looks for a shutdown
    every ``poll`` seconds, while inside; yields the server's URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = daemon_threads
    thread = threading.Thread(target=server.serve_forever, args=(poll,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
