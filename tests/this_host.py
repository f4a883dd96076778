"""A listener on this host's loopback addresses, and the spellings that reach it.

``listening()`` serves on 127.0.0.1 and ::1 at one port, so that every spelling of "this
host" (0.0.0.0, ``0``, ``[::]``, ``[::ffff:0:0]``, ``[::ffff:127.0.0.1]``...) reaches it,
and records every request it receives. It answers 200 with a JSON body, a chat completion
to ``POST .../chat/completions``, and a redirect to ``/to/<name>`` (``redirects[name]``).
Everything stays on loopback.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from threading import Thread
from typing import Any


def this_host_urls(port: int, path: str = "/") -> dict[str, str]:
    """Spellings of a URL that reach a listener on 127.0.0.1 and ::1 at ``port``."""
    p = port
    return {
        "unspecified": f"http://0.0.0.0:{p}{path}",
        "zero": f"http://0:{p}{path}",
        "zero-short": f"http://0.0:{p}{path}",
        "zero-hex": f"http://0x0:{p}{path}",
        "zero-other": f"http://0.1.2.3:{p}{path}",
        "zero-padded": f"http://000.000.000.000:{p}{path}",
        "zero-dot": f"http://0.0.0.0.:{p}{path}",
        "v6-unspecified": f"http://[::]:{p}{path}",
        "v6-unspecified-long": f"http://[0:0:0:0:0:0:0:0]:{p}{path}",
        "mapped-unspecified": f"http://[::ffff:0.0.0.0]:{p}{path}",
        "mapped-unspecified-hex": f"http://[::ffff:0:0]:{p}{path}",
        "mapped-loopback": f"http://[::ffff:127.0.0.1]:{p}{path}",
        "mapped-loopback-hex": f"http://[::FFFF:7F00:1]:{p}{path}",
        "mapped-zone": f"http://[::ffff:0.0.0.0%25lo]:{p}{path}",
        "compatible-loopback": f"http://[::127.0.0.1]:{p}{path}",
        "translated-loopback": f"http://[::ffff:0:127.0.0.1]:{p}{path}",
        "nat64-loopback": f"http://[64:ff9b::127.0.0.1]:{p}{path}",
        "sixtofour-loopback": f"http://[2002:7f00:1::1]:{p}{path}",
        "teredo-loopback": f"http://[2001:0:808:808:0:0:80ff:fffe]:{p}{path}",
        "decimal": f"http://2130706433:{p}{path}",
        "hex": f"http://0x7f000001:{p}{path}",
        "octal": f"http://0177.0.0.1:{p}{path}",
        "short": f"http://127.1:{p}{path}",
        "loopback": f"http://127.0.0.1:{p}{path}",
        "v6-loopback": f"http://[::1]:{p}{path}",
        "v6-loopback-zone": f"http://[::1%25lo]:{p}{path}",
        "name": f"http://localhost:{p}{path}",
    }


# Of those, the spellings a connection really reaches this host by on Linux (the others are
# refused by the guard all the same; trying them unguarded would send packets elsewhere).
REACHABLE = (
    "unspecified",
    "zero",
    "v6-unspecified",
    "mapped-unspecified",
    "mapped-unspecified-hex",
    "mapped-loopback",
    "decimal",
    "short",
)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self._answer()

    def _answer(self) -> None:
        self.server.host.requests.append(f"{self.command} {self.path}")
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.server.host.redirects[self.path[4:]])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        data: dict[str, Any] = {"ok": True}
        if self.path.endswith("/chat/completions"):
            message = {"role": "assistant", "content": "hello"}
            data = {"choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}
        body = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], family: socket.AddressFamily, host: Host):
        self.address_family = family
        self.host = host
        super().__init__(address, _Handler, bind_and_activate=False)
        if family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        try:
            self.server_bind()
            self.server_activate()
        except OSError:
            self.server_close()
            raise


@dataclass
class Host:
    """What a listener on this host received, and where its ``/to/<name>`` redirects."""

    port: int = 0
    requests: list[str] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def listening(v4: str = "127.0.0.1", v6: str | None = "::1") -> Iterator[Host]:
    """A listener on ``v4`` and ``v6`` at one free port, for the duration of the block."""
    host = Host()
    servers: list[_Server] = []
    for _ in range(50):  # the port free on v4 may be taken on v6: try another
        first = _Server((v4, 0), socket.AF_INET, host)
        port = first.server_address[1]
        if v6 is None:
            servers = [first]
            break
        try:
            second = _Server((v6, port), socket.AF_INET6, host)
        except OSError:
            first.server_close()
            continue
        servers = [first, second]
        break
    assert servers, "no port free on both loopback addresses"
    host.port = int(servers[0].server_address[1])
    threads = [Thread(target=s.serve_forever, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    try:
        yield host
    finally:
        for server, thread in zip(servers, threads, strict=True):
            server.shutdown()
            server.server_close()
            thread.join(5)
