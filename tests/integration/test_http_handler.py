"""The http handler against a real local HTTP server, and through a real local proxy."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from pydantic import ValidationError

from node_context import node_context
from orchestrion.errors import PermanentNodeError, PolicyViolation, TransientNodeError
from orchestrion.handlers.base import Controls, NodeContext, Resources
from orchestrion.handlers.http import SPEC, HttpConfig, build_http_client

PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")


@dataclass
class Server:
    """A running test server: its base URL and the requests it received."""

    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)


class QuietServer(ThreadingHTTPServer):
    """Clients that hang up early (timeouts, size limits) are expected here, not errors."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


def _start(handler: type[BaseHTTPRequestHandler], server: Server) -> ThreadingHTTPServer:
    httpd = QuietServer(("127.0.0.1", 0), handler)
    httpd.record = server  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    threading.Thread(target=httpd.serve_forever, args=(0.02,), daemon=True).start()
    return httpd


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def _handle(self) -> None:
        raise NotImplementedError

    def _reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, status: int, data: Any, **headers: str) -> None:
        self._reply(status, json.dumps(data).encode(), "application/json", **headers)


class AppHandler(_Handler):
    """The upstream API."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        parts = urlsplit(self.path)
        record = {
            "method": self.command,
            "path": parts.path,
            "query": parse_qs(parts.query),
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body,
        }
        self.server.record.requests.append(record)  # type: ignore[attr-defined]
        path = parts.path
        if path == "/json":
            self._json(200, {"hello": "world", "query": record["query"]})
        elif path == "/echo":
            self._json(
                201,
                {
                    "method": self.command,
                    "json": json.loads(body) if "json" in self.headers["Content-Type"] else None,
                    "content_type": self.headers.get("Content-Type"),
                },
            )
        elif path == "/text":
            self._reply(200, "plain text ✓".encode(), "text/plain; charset=utf-8")
        elif path == "/badjson":
            self._reply(200, b"not json at all", "application/json")
        elif path.startswith("/status/"):
            code = int(path.rsplit("/", 1)[1])
            self._reply(code, f"status {code} body".encode(), "text/plain", Retry_After="7")
        elif path == "/redirect":
            self._reply(302, b"", "text/plain", Location="/json")
        elif path == "/loop":
            self._reply(302, b"", "text/plain", Location="/loop")
        elif path == "/big":
            self._reply(200, b"x" * 5000, "text/plain")
        elif path == "/slow":
            time.sleep(1.0)
            self._json(200, {"slow": True})
        else:
            self._json(404, {"error": "not found"})


class ProxyHandler(_Handler):
    """A forward proxy: absolute-URI requests; answers for upstream.test, forwards the rest."""

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        target = urlsplit(self.path)
        self.server.record.requests.append(  # type: ignore[attr-defined]
            {"method": self.command, "target": self.path, "headers": dict(self.headers)}
        )
        if target.hostname == "upstream.test":
            self._json(200, {"via": "proxy", "target": self.path})
            return
        conn = http.client.HTTPConnection(target.hostname or "", target.port or 80, timeout=5)
        try:
            path = target.path + (f"?{target.query}" if target.query else "")
            headers = {k: v for k, v in self.headers.items() if k.lower() != "proxy-connection"}
            conn.request(self.command, path, body=body, headers=headers)
            upstream = conn.getresponse()
            data = upstream.read()
            self._reply(
                upstream.status,
                data,
                upstream.getheader("Content-Type", "application/octet-stream"),
                Via="1.1 test-proxy",
            )
        finally:
            conn.close()


@pytest.fixture(autouse=True)
def no_ambient_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests decide about proxies themselves, whatever the machine's environment says."""
    for name in PROXY_VARS:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture
def server() -> Iterator[Server]:
    record = Server(url="")
    httpd = _start(AppHandler, record)
    yield record
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def proxy() -> Iterator[Server]:
    record = Server(url="")
    httpd = _start(ProxyHandler, record)
    yield record
    httpd.shutdown()
    httpd.server_close()


def make_ctx(**overrides: Any) -> NodeContext:
    return node_context("http", "fetch", **overrides)


async def fetch(config: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    result: dict[str, Any] = await SPEC.run(make_ctx(**ctx), HttpConfig.model_validate(config))
    return result


async def test_get_json(server: Server) -> None:
    out = await fetch({"url": f"{server.url}/json", "query": {"page": 2, "tags": ["a", "b"]}})
    assert out["status_code"] == 200
    assert out["data"] == {"hello": "world", "query": {"page": ["2"], "tags": ["a", "b"]}}
    assert out["response"] == out["data"]
    assert out["headers"]["content-type"] == "application/json"
    assert out["url"] == f"{server.url}/json?page=2&tags=a&tags=b"
    assert out["elapsed_ms"] >= 0
    json.dumps(out)  # the output must be storable
    request = server.requests[0]
    assert request["headers"]["idempotency-key"] == "exec-1:fetch:1"
    assert request["headers"]["user-agent"].startswith("orchestrion/")


async def test_params_is_an_alias_of_query(server: Server) -> None:
    out = await fetch({"url": f"{server.url}/json", "params": {"q": "x"}})
    assert out["data"]["query"] == {"q": ["x"]}


async def test_post_json_body_and_headers(server: Server) -> None:
    out = await fetch(
        {
            "url": f"{server.url}/echo",
            "method": "post",
            "json": {"user_id": 123, "tags": ["x"]},
            "headers": {"X-Request-Source": "tests", "X-Attempt": 2},
        },
        attempt=2,
        idempotency_key="exec-1:fetch:2",
    )
    assert out["status_code"] == 201
    assert out["data"] == {
        "method": "POST",
        "json": {"user_id": 123, "tags": ["x"]},
        "content_type": "application/json",
    }
    headers = server.requests[0]["headers"]
    assert headers["x-request-source"] == "tests"
    assert headers["x-attempt"] == "2"
    assert headers["idempotency-key"] == "exec-1:fetch:2"


async def test_raw_body_and_own_idempotency_key(server: Server) -> None:
    await fetch(
        {
            "url": f"{server.url}/echo",
            "method": "PUT",
            "body": "a=1",
            "headers": {"idempotency-key": "mine", "Content-Type": "text/plain"},
        }
    )
    request = server.requests[0]
    assert request["body"] == b"a=1"
    assert request["headers"]["idempotency-key"] == "mine"


async def test_text_and_parse_modes(server: Server) -> None:
    assert (await fetch({"url": f"{server.url}/text"}))["data"] == "plain text ✓"
    # Mislabelled JSON in auto mode is kept as text; asking for JSON makes it an error.
    assert (await fetch({"url": f"{server.url}/badjson"}))["data"] == "not json at all"
    with pytest.raises(PermanentNodeError, match="not JSON"):
        await fetch({"url": f"{server.url}/badjson", "parse": "json"})
    assert (await fetch({"url": f"{server.url}/json", "parse": "text"}))["data"].startswith("{")


async def test_500_is_transient(server: Server) -> None:
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": f"{server.url}/status/500"})
    assert info.value.category == "http_5xx"
    message = str(info.value)
    assert message.startswith(f"GET {server.url}/status/500 returned 500")
    assert "status 500 body" in message


async def test_429_is_rate_limited_with_retry_after(server: Server) -> None:
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": f"{server.url}/status/429"})
    assert info.value.category == "rate_limited"
    assert info.value.details["retry_after"] == 7.0


async def test_404_is_permanent_with_excerpt(server: Server) -> None:
    with pytest.raises(PermanentNodeError) as info:
        await fetch({"url": f"{server.url}/status/404"})
    assert not info.value.transient
    assert info.value.category == "http_4xx"
    assert "returned 404" in str(info.value)
    assert info.value.details["body_excerpt"] == "status 404 body"


async def test_408_is_transient(server: Server) -> None:
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": f"{server.url}/status/408"})
    assert info.value.category == "timeout"


async def test_expected_status(server: Server) -> None:
    out = await fetch({"url": f"{server.url}/status/404", "expected_status": [404]})
    assert out["status_code"] == 404
    assert out["data"] == "status 404 body"
    with pytest.raises(PermanentNodeError) as info:
        await fetch({"url": f"{server.url}/json", "expected_status": [204]})
    assert info.value.category == "unexpected_status"
    assert "returned 200" in str(info.value)


async def test_redirects(server: Server) -> None:
    out = await fetch({"url": f"{server.url}/redirect"})
    assert out["status_code"] == 200
    assert out["url"] == f"{server.url}/json"
    # Not following: the 3xx itself is the answer.
    out = await fetch({"url": f"{server.url}/redirect", "follow_redirects": False})
    assert out["status_code"] == 302
    assert out["headers"]["location"] == "/json"
    with pytest.raises(PermanentNodeError, match="redirects"):
        await fetch({"url": f"{server.url}/loop"})


async def test_response_size_limit(server: Server) -> None:
    with pytest.raises(PermanentNodeError) as info:
        await fetch({"url": f"{server.url}/big", "max_response_bytes": 1000})
    assert info.value.category == "response_too_large"
    assert len((await fetch({"url": f"{server.url}/big"}))["data"]) == 5000


async def test_read_timeout_is_transient(server: Server) -> None:
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": f"{server.url}/slow", "timeout": 0.2})
    assert info.value.category == "timeout"
    assert str(info.value) == f"GET {server.url}/slow failed: timed out waiting for the response"


async def test_unresolvable_host_is_transient_with_clear_message() -> None:
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": "http://nonexistent.invalid/user"})
    assert info.value.category == "connection"
    message = str(info.value)
    assert message.startswith("GET http://nonexistent.invalid/user failed: could not connect (")
    assert "[Errno" not in message


async def test_connection_refused_is_transient() -> None:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), AppHandler)
    port = httpd.server_address[1]
    httpd.server_close()  # nothing listens there any more
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": f"http://127.0.0.1:{port}/json"})
    assert info.value.category == "connection"
    assert f"GET http://127.0.0.1:{port}/json failed: could not connect" in str(info.value)


async def test_credentials_in_url_are_not_shown(server: Server) -> None:
    url = server.url.replace("http://", "http://user:s3cret@") + "/status/500"
    with pytest.raises(TransientNodeError) as info:
        await fetch({"url": url})
    assert "s3cret" not in str(info.value)


async def test_shared_client_from_build_http_client(server: Server) -> None:
    async with build_http_client(timeout=5, max_connections=4) as client:
        resources = Resources(Controls.unrestricted(), http=client)
        outs = [await fetch({"url": f"{server.url}/json"}, resources=resources) for _ in range(3)]
    assert [out["status_code"] for out in outs] == [200, 200, 200]


async def test_url_guard_hook_sees_every_hop(server: Server) -> None:
    seen: list[str] = []

    async def guard(url: str) -> None:
        seen.append(url)
        if "/json" in url:
            raise PolicyViolation(f"blocked {url}")

    resources = Resources(replace(Controls.unrestricted(), url_guard=guard))
    with pytest.raises(PolicyViolation):
        await fetch({"url": f"{server.url}/redirect"}, resources=resources)
    assert seen == [f"{server.url}/redirect", f"{server.url}/json"]
    # The blocked hop never reached the server.
    assert [r["path"] for r in server.requests] == ["/redirect"]


async def test_proxy_from_http_proxy_env(
    server: Server, proxy: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    # The environment is read when the client is built.
    async with build_http_client() as client:
        out = await fetch(
            {"url": f"{server.url}/json"}, resources=Resources(Controls.unrestricted(), http=client)
        )
        assert out["data"]["hello"] == "world"
        assert out["headers"]["via"] == "1.1 test-proxy"
        # A host only the proxy knows.
        via = await fetch(
            {"url": "http://upstream.test/hello"},
            resources=Resources(Controls.unrestricted(), http=client),
        )
    assert via["data"] == {"via": "proxy", "target": "http://upstream.test/hello"}
    assert [r["target"] for r in proxy.requests] == [
        f"{server.url}/json",
        "http://upstream.test/hello",
    ]
    assert proxy.requests[0]["headers"]["Idempotency-Key"] == "exec-1:fetch:1"
    assert len(server.requests) == 1  # forwarded by the proxy


async def test_proxy_env_without_shared_client(
    proxy: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    out = await fetch({"url": "http://upstream.test/x"})
    assert out["data"]["via"] == "proxy"


async def test_no_proxy_env_bypasses_the_proxy(
    server: Server, proxy: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    async with build_http_client() as client:
        out = await fetch(
            {"url": f"{server.url}/json"}, resources=Resources(Controls.unrestricted(), http=client)
        )
    assert out["status_code"] == 200
    assert proxy.requests == []


@pytest.mark.parametrize(
    ("config", "fragment"),
    [
        ({"url": "ftp://example.com/x"}, "http:// or https://"),
        ({"url": "/relative"}, "http:// or https://"),
        ({"url": "http://x", "method": "BREW"}, "unsupported method"),
        ({"url": "http://x", "json": {}, "body": "a"}, "either 'json' or 'body'"),
        ({"url": "http://x", "query": {"a": 1}, "params": {"b": 2}}, "either 'query'"),
        ({"url": "http://x", "expected_status": [99]}, "not HTTP status codes"),
        ({"url": "http://x", "timeout": 0}, "greater than 0"),
        ({"url": "http://x", "retries": 3}, "retries"),
        ({}, "url"),
    ],
)
def test_config_validation(config: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        HttpConfig.model_validate(config)
    assert fragment in str(info.value)


def test_unrendered_template_url_passes_validation() -> None:
    config = HttpConfig.model_validate({"url": "{{ input.base }}/users"})
    assert config.url == "{{ input.base }}/users"


def test_spec_aliases() -> None:
    assert SPEC.name == "http"
    assert SPEC.aliases == ("call_external_service",)
