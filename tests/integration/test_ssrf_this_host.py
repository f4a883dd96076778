"""Every spelling of "this host" is refused where loopback is denied, and reaches nothing.

A real listener serves on 127.0.0.1 and ::1 at one port (``tests/this_host.py``). First, with
a policy that lets everything through, the spellings that reach it on Linux are shown to
reach it: 0.0.0.0, ``0``, ``[::]``, ``[::ffff:0:0]``, ``[::ffff:127.0.0.1]``... Then, with
``deny_loopback: true``, every spelling (those, and the IPv6 forms that carry 127.0.0.1:
compatible, translated, NAT64, 6to4, Teredo; decimal, hex, octal, short) fails its node with
category ``policy_violation`` on the first attempt, through real workflow runs (embedded and
scale-out), as a redirect target behind a permitted first hop, as an llm node's provider
``base_url``, and at connect time in the pinned backend when the pre-check is skipped or a
name resolves to such an address. The listener receives nothing in each case.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import PermanentNodeError, PolicyViolation
from orchestrion.governance.ssrf import UrlPolicy
from orchestrion.handlers.base import Controls, NodeContext, Resources
from orchestrion.handlers.http import HttpConfig, build_http_client
from orchestrion.handlers.registry import default_registry
from orchestrion.settings import load_settings
from scaleout import scaleout_engine
from this_host import REACHABLE, Host, listening, this_host_urls

DENY_LOOPBACK = "version: 1\nhttp:\n  deny_loopback: true\n"
KEY_ENV = "SSRF_THIS_HOST_API_KEY"


@pytest.fixture
def target() -> Iterator[Host]:
    with listening() as host:
        yield host


@pytest.fixture
def first_hop() -> Iterator[Host]:
    """A permitted server on 127.0.0.2 (no IPv6 twin): the redirects' first hop."""
    with listening("127.0.0.2", None) as host:
        yield host


def _ctx(policy: UrlPolicy) -> NodeContext:
    return NodeContext(
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


async def _get(url: str, policy: UrlPolicy) -> Any:
    spec = default_registry().get("http")
    return await spec.run(_ctx(policy), HttpConfig.model_validate({"url": url, "timeout": 5}))


@pytest.mark.parametrize("name", REACHABLE)
async def test_these_spellings_do_reach_a_loopback_listener_when_nothing_is_denied(
    target: Host, name: str
) -> None:
    # The control: without the guard's categories these addresses get through, so the
    # refusals below are what keeps the listener silent.
    open_policy = UrlPolicy(deny_networks=(), deny_reserved=False)
    out = await _get(this_host_urls(target.port, f"/{name}")[name], open_policy)
    assert out["data"] == {"ok": True}
    assert target.requests == [f"GET /{name}"]


def _http(node_id: str, url: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "http",
        "config": {"url": url, "timeout": 5},
        "retry": {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]},
    }


def _assert_refused(result: Any, node_ids: list[str]) -> None:
    for node_id in node_ids:
        node = result.nodes[node_id]
        assert node.state is NodeState.FAILED, (node_id, node)
        assert node.error is not None, node_id
        assert node.error["category"] == "policy_violation", (node_id, node.error)
        assert "SSRF guard" in node.error["message"], (node_id, node.error)
        assert node.attempt == 1, (node_id, node.attempt)  # not retried


@pytest.fixture(params=["sqlite", "scaleout"])
async def deny_loopback_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Engine]:
    async with _engine(request, tmp_path, DENY_LOOPBACK) as running:
        yield running


@contextlib.asynccontextmanager
async def _engine(
    request: pytest.FixtureRequest, tmp_path: Path, policy_text: str
) -> AsyncIterator[Engine]:
    policy = tmp_path / "governance.yaml"
    policy.write_text(policy_text)
    settings: dict[str, Any] = {"governance_file": policy, "rate_limit_per_second": 0}
    if request.param == "sqlite":
        loaded = load_settings(database_url=f"sqlite:///{tmp_path / 'o.db'}", **settings)
        async with Engine(settings=loaded) as running:
            yield running
        return
    # Workers and orchestrator read the same policy file from their settings.
    async with scaleout_engine(
        request.getfixturevalue("postgres_url"),
        request.getfixturevalue("redis_server"),
        request.getfixturevalue("redis_prefix"),
        settings=settings,
    ) as running:
        yield running


async def test_every_spelling_of_this_host_is_refused_when_loopback_is_denied(
    deny_loopback_engine: Engine, target: Host
) -> None:
    urls = this_host_urls(target.port, "/direct")
    nodes = [_http(name, url) for name, url in urls.items()]
    result = await deny_loopback_engine.run(
        {"name": "this-host", "dag": {"nodes": nodes}}, timeout=60
    )
    assert result.status is ExecutionStatus.FAILED
    _assert_refused(result, list(urls))
    assert target.requests == []
    # The classifier names what the address reaches, whatever the spelling.
    assert (
        "0.0.0.0/8 is denied (unspecified address, which reaches this host: deny_loopback"
        in (result.nodes["unspecified"].error or {})["message"]
    )
    assert (
        "which reaches 127.0.0.1 as Teredo client"
        in (result.nodes["teredo-loopback"].error or {})["message"]
    )


REDIRECT_TARGETS = [
    "unspecified",
    "zero",
    "v6-unspecified",
    "mapped-unspecified",
    "mapped-unspecified-hex",
    "mapped-loopback",
    "compatible-loopback",
    "nat64-loopback",
    "decimal",
    "octal",  # a Location httpx itself cannot parse
    "loopback",
    "v6-loopback",
]


@pytest.fixture(params=["sqlite", "scaleout"])
async def deny_target_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Engine]:
    # The first hop, 127.0.0.2, must be permitted, so loopback as a whole cannot be denied:
    # the policy denies the target's own addresses, and nothing by category. Every spelling
    # that reaches 127.0.0.1 or ::1 must still meet that network rule.
    policy = (
        "version: 1\nhttp:\n"
        '  deny_networks: [169.254.0.0/16, "fe80::/10", 127.0.0.1/32, "::1/128"]\n'
        "  deny_reserved: false\n"
    )
    async with _engine(request, tmp_path, policy) as running:
        yield running


async def test_a_redirect_to_this_host_is_refused_before_the_hop(
    deny_target_engine: Engine, target: Host, first_hop: Host
) -> None:
    urls = this_host_urls(target.port, "/via-redirect")
    first_hop.redirects.update({name: urls[name] for name in REDIRECT_TARGETS})
    base = f"http://127.0.0.2:{first_hop.port}"
    nodes = [_http(name, f"{base}/to/{name}") for name in REDIRECT_TARGETS]
    nodes.append(_http("permitted", f"{base}/fine"))
    result = await deny_target_engine.run(
        {"name": "redirects", "dag": {"nodes": nodes}}, timeout=60
    )
    _assert_refused(result, REDIRECT_TARGETS)
    assert result.nodes["permitted"].state is NodeState.COMPLETED
    assert target.requests == []
    assert sorted(first_hop.requests) == sorted(
        ["GET /fine", *(f"GET /to/{name}" for name in REDIRECT_TARGETS)]
    )


async def test_a_redirect_to_an_unspecified_address_is_refused_by_default(
    target: Host, first_hop: Host
) -> None:
    # The default policy lets loopback through but never the unspecified address.
    names = ["unspecified", "zero", "v6-unspecified", "mapped-unspecified-hex"]
    urls = this_host_urls(target.port, "/via-redirect")
    first_hop.redirects.update({name: urls[name] for name in names})
    for name in names:
        with pytest.raises(PolicyViolation, match="deny_reserved"):
            await _get(f"http://127.0.0.2:{first_hop.port}/to/{name}", UrlPolicy())
    assert target.requests == []
    assert len(first_hop.requests) == len(names)


def _llm(node_id: str, base_url: str) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "llm",
        "retry": {"max_attempts": 3, "initial_delay": 0.01, "retry_on": ["all"]},
        "config": {
            "provider": "openai",
            # A trusted node's own endpoint: called keyless (a key goes only to the origin
            # of its configured provider), and checked by the SSRF guard all the same.
            "base_url": base_url,
            "model": "gpt-test",
            "prompt": "hello",
            "timeout": 5,
        },
    }


async def test_an_llm_provider_on_this_host_is_refused_when_loopback_is_denied(
    deny_loopback_engine: Engine, target: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    urls = this_host_urls(target.port, "/v1")
    names = [name for name in urls if name != "octal"]  # not a URL an http client sends
    nodes = [_llm(name, urls[name]) for name in names]
    result = await deny_loopback_engine.run({"name": "llm", "dag": {"nodes": nodes}}, timeout=60)
    _assert_refused(result, names)
    assert target.requests == []


async def test_an_llm_provider_on_this_host_is_called_when_permitted(
    target: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The control for the test above: the same provider node, loopback permitted.
    monkeypatch.setenv(KEY_ENV, "sk-test")
    settings = load_settings(database_url="memory://", rate_limit_per_second=0)
    async with Engine(settings=settings) as engine:
        node = _llm("ok", f"http://127.0.0.1:{target.port}/v1")
        result = await engine.run({"name": "llm", "dag": {"nodes": [node]}}, timeout=30)
    assert result.nodes["ok"].state is NodeState.COMPLETED, result.nodes["ok"].error
    assert target.requests == ["POST /v1/chat/completions"]


def _resolving(answers: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


async def test_the_pinned_backend_refuses_this_host_without_the_pre_check(
    target: Host,
) -> None:
    # A client built with the policy, used directly (no url_guard call): the connection
    # itself is refused, by the same classifier, for literals and for names alike.
    names = {
        "zero.test": ["0.0.0.0"],
        "any6.test": ["::"],
        "mapped.test": ["::ffff:0:0"],
        "mapped-lo.test": ["::ffff:127.0.0.1"],
        "nat64.test": ["64:ff9b::7f00:1"],
    }
    policy = UrlPolicy(deny_loopback=True, resolver=_resolving(names))
    urls = [u for n, u in this_host_urls(target.port).items() if n in REACHABLE]
    urls += [f"http://{name}:{target.port}/" for name in names]
    async with build_http_client(url_policy=policy, trust_env=False) as client:
        for url in urls:
            with pytest.raises(PolicyViolation, match="SSRF guard"):
                await client.get(url)
    assert target.requests == []


async def test_a_name_resolving_to_this_host_is_refused_by_default_when_unspecified(
    target: Host,
) -> None:
    policy = UrlPolicy(resolver=_resolving({"rebind.test": ["0.0.0.0"]}))
    with pytest.raises(PolicyViolation, match=r"0\.0\.0\.0/8 is denied"):
        await _get(f"http://rebind.test:{target.port}/", policy)
    assert target.requests == []
    assert policy.refuses(ipaddress.ip_address("::ffff:0:0"))


async def test_requests_outside_the_policy_still_go_through(target: Host) -> None:
    # deny_loopback refuses only this host: the loopback listener through a permissive
    # policy, by name and by address, is still called.
    for url in (f"http://127.0.0.1:{target.port}/a", f"http://localhost:{target.port}/b"):
        out = await _get(url, UrlPolicy())
        assert out["status_code"] == 200
    assert sorted(target.requests) == ["GET /a", "GET /b"]
    with pytest.raises(httpx.InvalidURL):
        httpx.URL("http://0177.0.0.1/")  # why the octal redirect takes the guard's own path


async def test_a_redirect_httpx_cannot_follow_fails_once_as_a_bad_redirect(
    first_hop: Host,
) -> None:
    # Not an address any resolver reads (9 is no octal digit), so no policy matter: the node
    # fails as a bad redirect, not retried as a broken connection. No DNS query is made.
    first_hop.redirects["bad"] = "http://0999.1.1.1/"
    policy = UrlPolicy(resolver=_resolving({}))
    with pytest.raises(PermanentNodeError, match="redirected to an invalid URL") as caught:
        await _get(f"http://127.0.0.2:{first_hop.port}/to/bad", policy)
    assert caught.value.category == "redirects"
    assert first_hop.requests == ["GET /to/bad"]
