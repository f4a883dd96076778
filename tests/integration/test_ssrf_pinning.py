"""Connections go only to the addresses the SSRF guard checked: DNS rebinding is refused.

The guard resolves a name to check it; ``PinnedBackend`` resolves it again to connect and
checks those addresses too, then connects to them, never to the name. The tests drive the
policy's resolver seam with answers that change between the two lookups, against real local
servers (plain HTTP, HTTPS with a certificate made here, IPv6 loopback) and a real engine.
"""

from __future__ import annotations

import datetime
import socket
import ssl
from collections.abc import Iterable, Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import PolicyViolation
from orchestrion.governance.runtime import Governance
from orchestrion.governance.ssrf import UrlPolicy
from orchestrion.handlers.base import Controls, NodeContext, Resources
from orchestrion.handlers.http import HttpConfig, build_http_client, run_http
from orchestrion.settings import load_settings
from scaleout import scaleout_engine

POLICY = """\
version: 1
http:
  deny_networks: [169.254.0.0/16, "fe80::/10", "fd00:ec2::254/128", 127.0.0.2/32]
"""


class Recorder(BaseHTTPRequestHandler):
    """Answers 200 with JSON; each server keeps (request line target, Host header)."""

    def do_GET(self) -> None:
        self.server.requested.append((self.path, self.headers.get("Host")))  # type: ignore[attr-defined]
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _serve(host: str, tls: ssl.SSLContext | None = None) -> tuple[ThreadingHTTPServer, Thread]:
    cls = _V6Server if ":" in host else ThreadingHTTPServer
    httpd = cls((host, 0), Recorder)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    httpd.requested = []  # type: ignore[attr-defined]
    thread = Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    return httpd, thread


def _stop(*servers: tuple[ThreadingHTTPServer, Thread]) -> None:
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def local() -> Iterator[ThreadingHTTPServer]:
    server = _serve("127.0.0.1")
    yield server[0]
    _stop(server)


@pytest.fixture
def denied() -> Iterator[ThreadingHTTPServer]:
    """A real server on 127.0.0.2, the address the test policy denies."""
    server = _serve("127.0.0.2")
    yield server[0]
    _stop(server)


class Rebinder:
    """A resolver that answers ``first`` to the first lookup of a name, ``then`` after."""

    def __init__(self, first: Iterable[str], then: Iterable[str]) -> None:
        self.first, self.then = list(first), list(then)
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.lookups.append(host)
        return self.first if len(self.lookups) == 1 else self.then


def fixed(answers: dict[str, list[str]], lookups: list[str] | None = None) -> Any:
    """A resolver with a fixed table; unknown names fail as getaddrinfo does."""

    async def resolve(host: str, port: int) -> list[str]:
        if lookups is not None:
            lookups.append(host)
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


def _http(url: str) -> dict[str, Any]:
    return {
        "id": "fetch",
        "handler": "http",
        "config": {"url": url, "timeout": 5},
        "retry": {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]},
    }


def _governance(tmp_path: Path, resolver: Any) -> tuple[Any, Governance]:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'o.db'}", governance_file=policy)
    loaded = Governance.from_settings(settings)
    return settings, replace(loaded, url_policy=replace(loaded.url_policy, resolver=resolver))


async def test_a_name_rebound_to_a_denied_address_fails_as_a_policy_violation(
    tmp_path: Path, denied: ThreadingHTTPServer
) -> None:
    # The check sees 127.0.0.1 (allowed); the connection would see 127.0.0.2 (denied), where
    # a real server listens: without pinning the request would reach it.
    rebinder = Rebinder(["127.0.0.1"], ["127.0.0.2"])
    settings, governance = _governance(tmp_path, rebinder)
    url = f"http://rebind.test:{denied.server_address[1]}/secret"
    async with Engine(settings=settings, governance=governance) as engine:
        result = await engine.run({"name": "rebind", "dag": {"nodes": [_http(url)]}}, timeout=30)
    node = result.nodes["fetch"]
    assert result.status is ExecutionStatus.FAILED
    assert node.error is not None and node.error["category"] == "policy_violation", node.error
    assert "127.0.0.2" in node.error["message"] and "SSRF guard" in node.error["message"]
    assert node.attempt == 1  # not retried although the retry policy allows three
    assert rebinder.lookups == ["rebind.test", "rebind.test"]  # the check, then the connection
    assert denied.requested == []  # type: ignore[attr-defined]


async def test_the_connection_does_not_resolve_the_name_again(
    tmp_path: Path, local: ThreadingHTTPServer
) -> None:
    # The check sees 127.0.0.5 for `localhost`; the system resolver says 127.0.0.1, the
    # address denied here, where a real server listens. Unpinned, httpx would resolve the
    # name again and reach that server (a rebinding that works); pinned, the connection's
    # own lookup is checked and refused.
    rebinder = Rebinder(["127.0.0.5"], ["127.0.0.1"])
    settings, governance = _governance(tmp_path, None)
    denying = UrlPolicy(deny_networks=("169.254.0.0/16", "127.0.0.1/32"), resolver=rebinder)
    governance = replace(governance, url_policy=denying)
    url = f"http://localhost:{local.server_address[1]}/secret"
    async with Engine(settings=settings, governance=governance) as engine:
        result = await engine.run({"name": "rebind", "dag": {"nodes": [_http(url)]}}, timeout=30)
    node = result.nodes["fetch"]
    assert node.error is not None and node.error["category"] == "policy_violation", node.error
    assert node.attempt == 1
    assert local.requested == []  # type: ignore[attr-defined]


async def test_a_rebound_name_is_refused_by_scale_out_workers_too(
    request: pytest.FixtureRequest, tmp_path: Path, denied: ThreadingHTTPServer
) -> None:
    rebinder = Rebinder(["127.0.0.1"], ["127.0.0.2"])
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    _, governance = _governance(tmp_path, rebinder)
    url = f"http://rebind.test:{denied.server_address[1]}/secret"
    async with scaleout_engine(
        request.getfixturevalue("postgres_url"),
        request.getfixturevalue("redis_server"),
        request.getfixturevalue("redis_prefix"),
        settings={"governance_file": policy},
        worker_governance=governance,  # the worker runs the node: its client is pinned
    ) as engine:
        result = await engine.run({"name": "rebind", "dag": {"nodes": [_http(url)]}}, timeout=30)
    node = result.nodes["fetch"]
    assert node.error is not None and node.error["category"] == "policy_violation", node.error
    assert node.attempt == 1
    assert denied.requested == []  # type: ignore[attr-defined]


async def test_the_connection_goes_to_the_checked_address_not_to_the_name(
    tmp_path: Path, local: ThreadingHTTPServer
) -> None:
    # `pinned.test` exists only in the policy's resolver: a request that reaches the server
    # was connected to the address the policy checked, with the URL's name as Host.
    lookups: list[str] = []
    settings, governance = _governance(tmp_path, fixed({"pinned.test": ["127.0.0.1"]}, lookups))
    port = local.server_address[1]
    async with Engine(settings=settings, governance=governance) as engine:
        result = await engine.run(
            {"name": "pin", "dag": {"nodes": [_http(f"http://pinned.test:{port}/ok")]}},
            timeout=30,
        )
    assert result.nodes["fetch"].state is NodeState.COMPLETED, result.nodes["fetch"].error
    assert result.nodes["fetch"].output["data"] == {"ok": True}
    assert local.requested == [("/ok", f"pinned.test:{port}")]  # type: ignore[attr-defined]
    assert lookups == ["pinned.test", "pinned.test"]


async def test_a_policy_violation_at_connect_time_reaches_the_caller_of_the_client(
    denied: ThreadingHTTPServer,
) -> None:
    policy = UrlPolicy(deny_networks=("127.0.0.2/32",), resolver=fixed({"x.test": ["127.0.0.2"]}))
    async with build_http_client(url_policy=policy) as client:
        with pytest.raises(PolicyViolation, match=r"127\.0\.0\.2.*SSRF guard"):
            await client.get(f"http://x.test:{denied.server_address[1]}/")
        # An IP literal and a legacy spelling of it are checked at connect time too.
        with pytest.raises(PolicyViolation):
            await client.get(f"http://127.0.0.2:{denied.server_address[1]}/")
        with pytest.raises(PolicyViolation):
            await client.get(f"http://2130706434:{denied.server_address[1]}/")
    assert denied.requested == []  # type: ignore[attr-defined]


async def test_plain_http_through_the_pinned_client_with_the_system_resolver(
    local: ThreadingHTTPServer,
) -> None:
    port = local.server_address[1]
    async with build_http_client(url_policy=UrlPolicy()) as client:
        by_name = await client.get(f"http://localhost:{port}/name")
        by_ip = await client.get(f"http://127.0.0.1:{port}/ip")
    assert by_name.json() == {"ok": True} and by_ip.status_code == 200
    assert local.requested == [("/name", f"localhost:{port}"), ("/ip", f"127.0.0.1:{port}")]  # type: ignore[attr-defined]


async def test_a_refused_address_falls_through_to_the_next(local: ThreadingHTTPServer) -> None:
    # Nothing listens on 127.0.0.3 at the server's port: refused, then 127.0.0.1 answers.
    policy = UrlPolicy(resolver=fixed({"two.test": ["127.0.0.3", "127.0.0.1"]}))
    async with build_http_client(url_policy=policy) as client:
        response = await client.get(f"http://two.test:{local.server_address[1]}/second")
    assert response.status_code == 200
    assert [path for path, _ in local.requested] == ["/second"]  # type: ignore[attr-defined]


async def test_no_address_answering_or_none_at_all_is_a_connect_error(
    local: ThreadingHTTPServer,
) -> None:
    policy = UrlPolicy(resolver=fixed({"gone.test": ["127.0.0.3"]}))
    port = local.server_address[1]
    async with build_http_client(url_policy=policy) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"http://gone.test:{port}/")
        with pytest.raises(httpx.ConnectError, match="not known"):
            await client.get(f"http://nowhere.test:{port}/")


def _has_ipv6_loopback() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_ipv6_loopback_by_literal_and_by_name() -> None:
    server = _serve("::1")
    port = server[0].server_address[1]
    policy = UrlPolicy(resolver=fixed({"six.test": ["::1"]}))
    try:
        async with build_http_client(url_policy=policy) as client:
            literal = await client.get(f"http://[::1]:{port}/literal")
            named = await client.get(f"http://six.test:{port}/named")
        assert literal.status_code == named.status_code == 200
        async with build_http_client(url_policy=replace(policy, deny_loopback=True)) as client:
            with pytest.raises(PolicyViolation, match="::1"):
                await client.get(f"http://six.test:{port}/denied")
    finally:
        _stop(server)
    assert [path for path, _ in server[0].requested] == ["/literal", "/named"]  # type: ignore[attr-defined]


def _certificates(tmp_path: Path, name: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``name`` only (no IP address), as PEM files."""
    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, issuer: x509.Name | None, key: Any, signer: Any) -> x509.Certificate:
        subject_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject_name)
            .issuer_name(issuer or subject_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(signer.public_key()),
                critical=False,
            )
        )
        if issuer is None:
            builder = builder.add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            ).add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False),
                critical=True,
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False
            ).add_extension(
                x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
        return builder.sign(signer, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = build("orchestrion test CA", None, ca_key, ca_key)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = build(name, ca.subject, key, ca_key)
    paths = (tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


async def test_https_verifies_the_certificate_against_the_name_not_the_address(
    tmp_path: Path,
) -> None:
    ca, cert, key = _certificates(tmp_path, "secure.test")
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = _serve("127.0.0.1", tls)
    port = server[0].server_address[1]
    policy = UrlPolicy(resolver=fixed({"secure.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]}))
    trusting = ssl.create_default_context(cafile=ca)
    try:
        async with build_http_client(url_policy=policy, verify=trusting) as client:
            # Connected to 127.0.0.1, which the certificate does not name: it verifies because
            # TLS is started with the URL's host (SNI and hostname check), the pinned address
            # only being where the socket goes.
            response = await client.get(f"https://secure.test:{port}/tls")
            assert response.json() == {"ok": True}
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await client.get(f"https://other.test:{port}/wrong-name")
    finally:
        _stop(server)
    assert [path for path, _ in server[0].requested] == ["/tls"]  # type: ignore[attr-defined]


async def test_through_an_http_proxy_the_target_is_left_to_the_proxy(
    monkeypatch: pytest.MonkeyPatch, local: ThreadingHTTPServer
) -> None:
    # The local server stands in for the proxy: it records the absolute-form request line.
    proxy = f"http://127.0.0.1:{local.server_address[1]}"
    for variable in ("HTTP_PROXY", "http_proxy"):
        monkeypatch.setenv(variable, proxy)
    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.setenv(variable, "near.test")
    lookups: list[str] = []
    policy = UrlPolicy(resolver=fixed({"near.test": ["127.0.0.1"]}, lookups))
    async with build_http_client(url_policy=policy) as client:
        far = await client.get("http://far.test/through-proxy")
        near = await client.get(f"http://near.test:{local.server_address[1]}/direct")
    assert far.status_code == near.status_code == 200
    # far.test went to the proxy unresolved here; near.test (NO_PROXY) was pinned.
    assert lookups == ["near.test"]
    assert [path for path, _ in local.requested] == [  # type: ignore[attr-defined]
        "http://far.test/through-proxy",
        "/direct",
    ]


async def test_the_llm_provider_url_is_pinned_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, denied: ThreadingHTTPServer
) -> None:
    monkeypatch.setenv("PIN_LLM_API_KEY", "sk-pinning-test")
    rebinder = Rebinder(["127.0.0.1"], ["127.0.0.2"])
    settings, governance = _governance(tmp_path, rebinder)
    node = {
        "id": "ask",
        "handler": "llm",
        "retry": {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]},
        "config": {
            "provider": "openai",
            # A trusted node's own endpoint (keyless: not a configured provider's origin).
            "base_url": f"http://rebind.test:{denied.server_address[1]}/v1",
            "prompt": "hello",
        },
    }
    async with Engine(settings=settings, governance=governance) as engine:
        result = await engine.run({"name": "llm", "dag": {"nodes": [node]}}, timeout=30)
    ask = result.nodes["ask"]
    assert ask.error is not None and ask.error["category"] == "policy_violation", ask.error
    assert ask.attempt == 1
    assert denied.requested == []  # type: ignore[attr-defined]


async def test_a_handler_without_a_shared_client_pins_its_own(
    denied: ThreadingHTTPServer,
) -> None:
    # No `Resources.http` (a handler run on its own): the client it builds is pinned with
    # the installed UrlPolicy.
    policy = UrlPolicy(
        deny_networks=("127.0.0.2/32",), resolver=Rebinder(["127.0.0.1"], ["127.0.0.2"])
    )
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
    config = HttpConfig.model_validate({"url": f"http://rebind.test:{denied.server_address[1]}/"})
    with pytest.raises(PolicyViolation, match=r"127\.0\.0\.2"):
        await run_http(ctx, config)
    assert denied.requested == []  # type: ignore[attr-defined]
