"""A real ``orchestrion serve`` at its edge: bounded event streams, streams that end with
their session, and a server that answers only its own host names.

Streams are read over real sockets (an in-process transport buffers whole answers), so a slot
is held exactly as long as a client keeps its connection, and given back when it goes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from test_api_server import Server

from orchestrion.api.sessions import COOKIE, SessionKey, issue

KEYS = "view-a:viewer:vic,view-b:viewer:vera,op-key:operator:olga"
NOOPS = {
    "name": "noops",
    "dag": {"nodes": [{"id": f"n{i}", "handler": "noop"} for i in range(5)]},
}


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.05)


def _open_streams(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("orchestrion_event_streams_open "):
            return float(line.split()[1])
    raise AssertionError("no orchestrion_event_streams_open metric")


def _run(client: httpx.Client) -> str:
    submitted = client.post("/v1/workflow", json=NOOPS)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    assert client.post(f"/v1/workflow/trigger/{execution_id}").status_code == 202
    return execution_id


def test_event_streams_are_limited_per_caller_and_per_process(tmp_path: Path) -> None:
    env = {
        "ORCHESTRION_API_KEYS": KEYS,
        "ORCHESTRION_SSE_MAX_STREAMS_PER_CALLER": "3",
        "ORCHESTRION_SSE_MAX_STREAMS": "5",
    }
    server = Server(tmp_path, tmp_path / "s.db", env)
    try:
        with contextlib.ExitStack() as stack:

            def client(key: str) -> httpx.Client:
                return stack.enter_context(
                    httpx.Client(base_url=server.url, headers=_bearer(key), timeout=10)
                )

            vic, vera, olga = client("view-a"), client("view-b"), client("op-key")
            execution_id = _run(olga)

            def hold(who: httpx.Client, path: str) -> contextlib.ExitStack:
                held = contextlib.ExitStack()
                response = held.enter_context(who.stream("GET", path))
                assert response.status_code == 200, response.read()
                assert response.headers["cache-control"] == "no-store"
                stack.enter_context(held)
                return held

            # Every kind of stream counts: the journal, an execution's events, its logs.
            vics = [
                hold(vic, "/v1/events/stream?tail=true"),
                hold(vic, "/v1/events/stream?tail=true"),
                hold(vic, "/v1/events/stream?tail=true"),
            ]
            for path in (
                "/v1/events/stream?tail=true",
                f"/v1/workflows/{execution_id}/logs/stream",
                f"/v1/workflows/{execution_id}/nodes/n1/logs/stream",
                f"/v1/workflows/{execution_id}/events/stream",
            ):
                refused = vic.get(path)
                assert refused.status_code == 429, refused.text
                assert refused.headers["retry-after"].isdigit()
                detail = refused.json()["detail"]
                assert "ORCHESTRION_SSE_MAX_STREAMS_PER_CALLER" in detail and "3" in detail
            assert vic.get("/v1/workflows").status_code == 200  # other calls are not limited

            # Another caller has its own three, but the process holds five in all.
            hold(vera, "/v1/events/stream?tail=true")
            hold(vera, "/v1/events/stream?tail=true")
            full = vera.get("/v1/events/stream?tail=true")
            assert full.status_code == 503, full.text
            assert "ORCHESTRION_SSE_MAX_STREAMS" in full.json()["detail"]
            assert full.headers["retry-after"].isdigit()
            assert _open_streams(olga) == 5

            # A client that goes away gives its slot back.
            vics[0].close()
            _eventually(lambda: _open_streams(olga) == 4)
            hold(vic, "/v1/events/stream?tail=true")
            assert _open_streams(olga) == 5
        with httpx.Client(base_url=server.url, headers=_bearer("op-key")) as after:
            _eventually(lambda: _open_streams(after) == 0)
    finally:
        server.stop()


class _Reader(threading.Thread):
    """Reads one stream to its end in the background: its lines, and when it ended."""

    def __init__(self, client: httpx.Client, path: str) -> None:
        super().__init__(daemon=True)
        self.client, self.path = client, path
        self.lines: list[str] = []
        self.opened = threading.Event()
        self.stop = threading.Event()  # the test is done with it
        self.status = 0
        self.ended_at: float | None = None

    def run(self) -> None:
        with self.client.stream("GET", self.path) as response:
            self.status = response.status_code
            self.opened.set()
            for line in response.iter_lines():  # keep-alives come every second
                self.lines.append(line)
                if self.stop.is_set():
                    break
        self.ended_at = time.monotonic()


def _minted(server: Server, key: str, seconds: float) -> httpx.Client:
    """A client holding a session cookie of ``key`` that expires in ``seconds`` (made as the
    server makes them: shorter than the server's own minimum of a minute)."""
    value, _ = issue(SessionKey.of(key), seconds)
    client = httpx.Client(base_url=server.url, timeout=30)
    client.cookies.set(COOKIE, value)
    assert client.get("/v1/session").status_code == 200
    return client


def _sign_in(server: Server, key: str) -> tuple[httpx.Client, str]:
    client = httpx.Client(base_url=server.url, timeout=30)
    signed = client.post("/v1/session", headers=_bearer(key))
    assert signed.status_code == 201, signed.text
    return client, str(signed.json()["csrf_token"])


def test_a_stream_ends_when_its_session_does(tmp_path: Path) -> None:
    env = {
        "ORCHESTRION_API_KEYS": KEYS,
        "ORCHESTRION_SSE_POLL": "0.5",
        "ORCHESTRION_SSE_KEEPALIVE": "1",
    }
    server = Server(tmp_path, tmp_path / "s.db", env)
    try:
        with httpx.Client(base_url=server.url, headers=_bearer("op-key"), timeout=10) as olga:
            signed_out, token = _sign_in(server, "view-a")
            expiring = _minted(server, "view-b", 6)
            bearer = httpx.Client(base_url=server.url, headers=_bearer("view-a"), timeout=30)
            readers = {
                "signed out": _Reader(signed_out, "/v1/events/stream?tail=true"),
                "expiring": _Reader(expiring, "/v1/events/stream?tail=true"),
                "bearer": _Reader(bearer, "/v1/events/stream?tail=true"),
            }
            for reader in readers.values():
                reader.start()
                assert reader.opened.wait(10) and reader.status == 200
            started = time.monotonic()

            out = signed_out.delete("/v1/session", headers={"X-CSRF-Token": token})
            assert out.status_code == 200, out.text
            execution_id = _run(olga)  # committed after the sign-out
            readers["signed out"].join(5)
            assert readers["signed out"].ended_at is not None, "still streaming after sign-out"
            assert not any(execution_id in line for line in readers["signed out"].lines)

            # The other session's stream delivers, until the session expires (6 s).
            _eventually(lambda: any(execution_id in line for line in readers["expiring"].lines))
            readers["expiring"].join(15)
            ended = readers["expiring"].ended_at
            assert ended is not None and 4 < ended - started < 10
            assert signed_out.get("/v1/events/stream").status_code == 401  # cannot reopen

            # A bearer key's stream is not a session's: it goes on.
            assert readers["bearer"].is_alive()
            assert any(execution_id in line for line in readers["bearer"].lines)
            readers["bearer"].stop.set()
            readers["bearer"].join(5)
            assert not readers["bearer"].is_alive()
            bearer.close()
            signed_out.close()
            expiring.close()
    finally:
        server.stop()


def test_the_server_answers_only_its_own_host_names(tmp_path: Path) -> None:
    server = Server(tmp_path, tmp_path / "s.db", {"ORCHESTRION_ALLOWED_HOSTS": "orch.example"})
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            port = server.port
            for host in (f"127.0.0.1:{port}", f"localhost:{port}", "orch.example"):
                answer = client.get("/v1/workflows", headers={"Host": host})
                assert answer.status_code == 200, (host, answer.text)
            # DNS rebinding: the attacker's name, resolved to the server's address.
            for path in ("/v1/workflows", "/ui/", "/docs", "/openapi.json"):
                answer = client.get(path, headers={"Host": f"rebind.attacker.example:{port}"})
                assert answer.status_code == 421, (path, answer.text)
                assert "ORCHESTRION_ALLOWED_HOSTS" in answer.json()["detail"]
            # A text/plain cross-site submission (a CORS simple request): refused.
            answer = client.post(
                "/v1/workflow",
                content=b'{"name": "csrf", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}',
                headers={"Content-Type": "text/plain", "Origin": "https://evil.example"},
            )
            assert answer.status_code in (403, 415), answer.text
            assert client.get("/v1/definitions").json()["items"] == []
    finally:
        server.stop()
