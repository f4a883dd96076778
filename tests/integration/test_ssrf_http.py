"""The SSRF guard on the http handler against a real local server: a redirect into a denied
range is refused before the hop is requested (issue #6)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from loopback_listener import serving
from orchestrion.errors import PolicyViolation
from orchestrion.governance.ssrf import UrlPolicy
from orchestrion.handlers.base import Controls, NodeContext, Resources
from orchestrion.handlers.http import HttpConfig
from orchestrion.handlers.registry import default_registry

requested: list[str] = []  # paths the local server was asked for


class Redirector(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        requested.append(self.path)
        targets = {
            "/to-metadata": "http://169.254.169.254/latest/meta-data/",
            "/to-private": "http://10.0.0.1/admin",
            "/to-mapped": "http://[::ffff:169.254.169.254]/",
        }
        if self.path in targets:
            self.send_response(302)
            self.send_header("Location", targets[self.path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    requested.clear()
    with serving(Redirector) as url:
        yield url


async def get(url: str, policy: UrlPolicy) -> Any:
    ctx = NodeContext(
        execution_id="e",
        node_id="n",
        attempt=1,
        idempotency_key="e:n:1",
        inputs={},
        outputs={},
        dependencies=(),
        handler="http",
        resources=Resources(replace(Controls.unrestricted(), url_guard=policy)),
    )
    spec = default_registry().get("http")
    return await spec.run(ctx, HttpConfig.model_validate({"url": url}))


@pytest.mark.parametrize("path", ["/to-metadata", "/to-mapped"])
async def test_a_redirect_to_the_metadata_service_is_blocked(server: str, path: str) -> None:
    with pytest.raises(PolicyViolation, match=r"169\.254"):
        await get(server + path, UrlPolicy())
    assert requested == [path]  # the local hop only; nothing was sent towards the target


async def test_a_redirect_into_a_denied_private_range_is_blocked(server: str) -> None:
    with pytest.raises(PolicyViolation, match=r"10\.0\.0\.0/8 is denied"):
        await get(server + "/to-private", UrlPolicy(deny_private=True))
    assert requested == ["/to-private"]


async def test_allowed_requests_go_through(server: str) -> None:
    out = await get(server + "/ok", UrlPolicy(deny_private=True))
    assert out["data"] == {"ok": True}
