"""``orchestrion serve --workers N`` as a real process tree, and HTTP connections pinned to one
of its server processes.

The kernel hands each new connection on the shared port to one server process; a connection
kept alive stays with it. ``Pinned.to`` opens connections until one lands on the wanted
process, found through ``/proc`` (the server side of the connection is a socket one child holds
open: ``bench/proc_tree.py``, shared with the benches), so a test can submit through one
process and act through another, for sure.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from bench.proc_tree import children, holder

CLI = [sys.executable, "-m", "orchestrion.cli.app"]


class Pinned:
    """One kept-alive HTTP connection to the server process ``pid``."""

    def __init__(self, conn: http.client.HTTPConnection, pid: int, headers: dict[str, str]):
        self.conn = conn
        self.pid = pid
        self.headers = headers

    @classmethod
    def to(cls, server: WorkersServer, pid: int, headers: dict[str, str] | None = None) -> Pinned:
        for _ in range(200):
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/health")
            conn.getresponse().read()
            assert conn.sock is not None
            if holder(server.port, conn.sock.getsockname()[1], [pid]) == pid:
                return cls(conn, pid, headers or {})
            conn.close()
        raise AssertionError(f"no connection landed on server process {pid}")

    def call(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any, http.client.HTTPMessage]:
        sent = {**self.headers, **(headers or {})}
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            sent.setdefault("Content-Type", "application/json")
        self.conn.request(method, path, body=data, headers=sent)
        response = self.conn.getresponse()
        raw = response.read()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode()
        return response.status, decoded, response.headers

    def start(self, spec: dict[str, Any]) -> str:
        """Submit and trigger ``spec`` through this process, which then drives it; its id."""
        status, body, _ = self.call("POST", "/v1/workflow", spec)
        assert status == 201, body
        execution_id = str(body["execution_id"])
        status, body, _ = self.call("POST", f"/v1/workflow/trigger/{execution_id}", {})
        assert status == 202, body
        return execution_id

    def stream(self, path: str) -> http.client.HTTPResponse:
        """An SSE response on this connection (read it with ``sse_events``)."""
        self.conn.request("GET", path, headers={**self.headers, "Accept": "text/event-stream"})
        response = self.conn.getresponse()
        assert response.status == 200, response.read()
        return response

    def close(self) -> None:
        self.conn.close()


def sse_events(response: http.client.HTTPResponse, until: str, timeout: float = 30) -> list[dict]:
    """The events of an SSE response (``event`` and parsed ``data``), until one of type
    ``until`` (by ``event:`` name or its data's ``type``) or the stream's end ("" never
    matches)."""
    events: list[dict] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = response.readline()
        if not line:
            return events
        text = line.decode().rstrip("\n")
        if text.startswith("event: "):
            current["event"] = text[7:]
        elif text.startswith("data: "):
            current["data"] = json.loads(text[6:])
            current["at"] = time.monotonic()
        elif text == "" and current:
            events.append(current)
            kinds = {current.get("event"), (current.get("data") or {}).get("type")}
            current = {}
            if until in kinds:
                return events
    raise AssertionError(f"no {until} event within {timeout}s: {events}")


class WorkersServer:
    """``orchestrion serve --workers N`` on a free port and a database, until ``stop``."""

    def __init__(
        self,
        folder: Path,
        db: str | Path,
        workers: int = 2,
        env: dict[str, str] | None = None,
        wait: bool = True,
        options: tuple[str, ...] = (),
    ) -> None:
        self.log = folder / f"workers-{time.monotonic_ns()}.log"
        full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
        full_env.pop("OPENAI_API_KEY", None)
        full_env.update({"ORCHESTRION_RATE_LIMIT_PER_SECOND": "0", **(env or {})})
        command = [
            *CLI, "serve", "--port", "0", "--db", str(db), "--workers", str(workers), *options,
        ]  # fmt: skip
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, env=full_env, cwd=folder
            )
        self.workers = workers
        self.port = 0
        if wait:
            self.wait_ready()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for line in self.log.read_text().splitlines():
            if line.startswith("{"):
                found.append(json.loads(line))
        return found

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until every server process listens (a 'listening on' line each)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited early:\n{self.log.read_text()}")
            listening = [r for r in self.lines() if r.get("message", "").startswith("listening")]
            if listening:
                self.port = int(listening[0]["port"])
            if len(listening) >= self.workers + 1 and len(self.children()) == self.workers:
                return
            time.sleep(0.05)
        self.stop(signal.SIGKILL)
        raise AssertionError(f"server not ready in {timeout}s:\n{self.log.read_text()}")

    def children(self) -> list[int]:
        return children(self.process.pid)

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 40) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                for pid in self.children():
                    os.kill(pid, signal.SIGKILL)
                self.process.kill()
                self.process.wait()
                raise AssertionError(f"no exit after {sig!r}:\n{self.log.read_text()}") from None
        return int(self.process.returncode)
