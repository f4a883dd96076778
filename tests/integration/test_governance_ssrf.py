"""The SSRF guard through real workflow runs, embedded and scale-out (issue #6, item 5).

Every http node of a corpus of forbidden targets fails with category ``policy_violation`` on
its first attempt although its retry policy allows three, and the real target server never
hears of it. The targets are the cloud metadata addresses (nothing answers there) and a real
local server on 127.0.0.2, an address the test policy denies, reached directly, through a
redirect from an allowed server and through every other spelling of its address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from scaleout import scaleout_engine

POLICY = """\
version: 1
http:
  deny_networks: [169.254.0.0/16, "fe80::/10", "fd00:ec2::254/128", 127.0.0.2/32]
  deny_hosts: [metadata.google.internal, metadata, localhost]
  allow_hosts: [localhost]
"""


class Recorder(BaseHTTPRequestHandler):
    """Answers 200, or redirects ``/to?url=...``; each server keeps the paths it was asked."""

    def do_GET(self) -> None:
        self.server.requested.append(self.path)  # type: ignore[attr-defined]
        if self.path.startswith("/to/"):
            self.send_response(302)
            self.send_header("Location", self.server.redirects[self.path])  # type: ignore[attr-defined]
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


def _serve(host: str) -> tuple[ThreadingHTTPServer, Thread]:
    httpd = ThreadingHTTPServer((host, 0), Recorder)
    httpd.requested = []  # type: ignore[attr-defined]
    httpd.redirects = {}  # type: ignore[attr-defined]
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


@pytest.fixture
def servers() -> Iterator[tuple[ThreadingHTTPServer, ThreadingHTTPServer]]:
    """(allowed server on 127.0.0.1, target server on the denied 127.0.0.2)."""
    allowed, t1 = _serve("127.0.0.1")
    target, t2 = _serve("127.0.0.2")
    yield allowed, target
    for httpd, thread in ((allowed, t1), (target, t2)):
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture(params=["sqlite", "scaleout"])
async def engine(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Engine]:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    if request.param == "sqlite":
        settings = load_settings(
            database_url=f"sqlite:///{tmp_path / 'o.db'}", governance_file=policy
        )
        async with Engine(settings=settings) as running:
            yield running
        return
    postgres_url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")
    # Workers and orchestrator read the same policy file from their settings.
    async with scaleout_engine(
        postgres_url, redis_url, prefix, settings={"governance_file": policy}
    ) as running:
        yield running


def _http(node_id: str, url: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "http",
        "config": {"url": url, "timeout": 5},
        "retry": {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]},
    }


def _corpus(allowed: str, target_port: int) -> dict[str, str]:
    t = target_port
    return {
        "metadata-ip": "http://169.254.169.254/latest/meta-data/",
        "metadata-name": "http://metadata.google.internal/computeMetadata/v1/",
        "metadata-name-case": "http://METADATA.Google.Internal./computeMetadata/v1/",
        "metadata-mapped-v6": "http://[::ffff:169.254.169.254]/latest/",
        "metadata-decimal": "http://2852039166/latest/",
        "metadata-octal": "http://0251.0376.0251.0376/latest/",
        "metadata-hex": "http://0xa9fea9fe/latest/",
        "link-local-v6": "http://[fe80::1]/",
        "redirect-to-metadata": f"{allowed}/to/metadata",
        "redirect-to-denied": f"{allowed}/to/denied",
        "denied-direct": f"http://127.0.0.2:{t}/direct",
        "denied-decimal": f"http://2130706434:{t}/decimal",
        "denied-octal": f"http://0177.0.0.02:{t}/octal",
        "denied-hex": f"http://0x7f000002:{t}/hex",
        "denied-mapped-v6": f"http://[::ffff:127.0.0.2]:{t}/mapped",
    }


async def test_forbidden_targets_fail_as_policy_violations_without_a_request(
    engine: Engine, servers: tuple[ThreadingHTTPServer, ThreadingHTTPServer]
) -> None:
    allowed, target = servers
    base = f"http://127.0.0.1:{allowed.server_address[1]}"
    target_port = target.server_address[1]
    allowed.redirects.update(  # type: ignore[attr-defined]
        {
            "/to/metadata": "http://169.254.169.254/latest/meta-data/iam/",
            "/to/denied": f"http://127.0.0.2:{target_port}/via-redirect",
        }
    )
    corpus = _corpus(base, target_port)
    nodes = [_http(node_id, url) for node_id, url in corpus.items()]
    nodes.append(_http("allowed", f"{base}/fine"))
    nodes.append(_http("allowed-by-name", f"http://localhost:{allowed.server_address[1]}/name"))

    result = await engine.run({"name": "ssrf", "dag": {"nodes": nodes}}, timeout=60)

    assert result.status is ExecutionStatus.FAILED
    for node_id in corpus:
        node = result.nodes[node_id]
        assert node.state is NodeState.FAILED, (node_id, node)
        assert node.error is not None
        assert node.error["category"] == "policy_violation", (node_id, node.error)
        assert "SSRF guard" in node.error["message"], (node_id, node.error)
        assert node.attempt == 1, (node_id, node.attempt)  # not retried
    assert target.requested == []  # type: ignore[attr-defined]
    # The allowed server saw the two redirects' first hops and the two allowed requests.
    assert sorted(allowed.requested) == ["/fine", "/name", "/to/denied", "/to/metadata"]  # type: ignore[attr-defined]
    assert result.nodes["allowed"].state is NodeState.COMPLETED
    assert result.nodes["allowed-by-name"].state is NodeState.COMPLETED
    assert result.nodes["allowed"].output["data"] == {"ok": True}


async def test_an_allow_list_of_networks_admits_only_those(tmp_path: Path) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text("version: 1\nhttp:\n  allow_networks: [127.0.0.1/32]\n")
    allowed, t1 = _serve("127.0.0.1")
    other, t2 = _serve("127.0.0.3")
    settings = load_settings(database_url="memory://", governance_file=policy)
    try:
        async with Engine(settings=settings) as engine:
            nodes = [
                _http("in", f"http://127.0.0.1:{allowed.server_address[1]}/in"),
                _http("out", f"http://127.0.0.3:{other.server_address[1]}/out"),
            ]
            result = await engine.run({"name": "nets", "dag": {"nodes": nodes}}, timeout=30)
    finally:
        for httpd, thread in ((allowed, t1), (other, t2)):
            httpd.shutdown()
            httpd.server_close()
            thread.join(5)
    assert result.nodes["in"].state is NodeState.COMPLETED
    out = result.nodes["out"]
    assert out.error is not None and out.error["category"] == "policy_violation"
    assert "not in an allowed network" in out.error["message"]
    assert other.requested == []  # type: ignore[attr-defined]
