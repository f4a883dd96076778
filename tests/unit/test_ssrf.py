"""The SSRF guard: a corpus of targets that must be refused, and ones that must pass (issue #6).

Every target here is refused before any connection is made; numeric spellings are resolved
by the local resolver (no DNS traffic). The pinned backend is driven with a resolver table and
an inner backend that records where it is asked to connect.
"""

from __future__ import annotations

import socket
from typing import Any

import httpcore
import pytest

from orchestrion.errors import PolicyViolation
from orchestrion.governance.pinning import PinnedBackend
from orchestrion.governance.ssrf import UrlPolicy

BLOCKED_BY_DEFAULT = [
    "http://169.254.169.254/latest/meta-data/",
    "http://169.254.169.254:80/computeMetadata/v1/",
    "http://metadata.google.internal/computeMetadata/v1/",
    "http://METADATA.google.internal./",
    "http://metadata/",
    "http://instance-data/latest/",
    "http://[::ffff:169.254.169.254]/",  # IPv4-mapped IPv6
    "http://[::ffff:a9fe:a9fe]/",
    "http://2852039166/",  # decimal
    "http://0xA9FEA9FE/",  # hexadecimal
    "http://0251.0376.0251.0376/",  # octal
    "http://169.254.1.1/",  # anything link-local
    "http://[fe80::1]/",
    "http://[fd00:ec2::254]/",  # AWS IPv6 metadata
    "http://user:pw@169.254.169.254/",
    "http:///nohost",
    "http://100.100.100.200/latest/meta-data/",  # Alibaba Cloud metadata
    "http://[::ffff:100.100.100.200]/",
    "http://0.0.0.0:8000/",  # unspecified: reaches this host
    "http://0:8000/",
    "http://[::]:8000/",
    "http://[::ffff:0:0]:8000/",
    "http://224.0.0.1/",  # multicast
    "http://[ff02::1]/",
    "http://255.255.255.255/",  # broadcast
    "http://240.0.0.1/",  # reserved
    "http://[2002:a9fe:a9fe::]/",  # 6to4 carrying 169.254.169.254
    "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 carrying it
]


@pytest.mark.parametrize("url", BLOCKED_BY_DEFAULT)
async def test_metadata_and_link_local_are_blocked_by_default(url: str) -> None:
    with pytest.raises(PolicyViolation, match="blocked request"):
        await UrlPolicy().check(url)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/x", "http://10.1.2.3/", "https://[2001:db8::1]/"]
)
async def test_ordinary_addresses_pass_by_default(url: str) -> None:
    await UrlPolicy().check(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://[::ffff:10.0.0.1]/",
        "http://167772161/",  # 10.0.0.1 in decimal
        "http://[fd12::1]/",
    ],
)
async def test_private_ranges_when_denied(url: str) -> None:
    with pytest.raises(PolicyViolation, match="is denied"):
        await UrlPolicy(deny_private=True).check(url)


async def test_loopback_names_are_checked_after_resolution() -> None:
    with pytest.raises(PolicyViolation, match="localhost"):
        await UrlPolicy(deny_loopback=True).check("http://localhost:8080/")


async def test_allow_lists() -> None:
    only = UrlPolicy(allow_networks=("203.0.113.0/24",))
    await only.check("http://203.0.113.9/")
    with pytest.raises(PolicyViolation, match="not in an allowed network"):
        await only.check("http://198.51.100.1/")
    # A name on both lists is allowed (resolved locally: no DNS query leaves the machine).
    await UrlPolicy(allow_hosts=("localhost",), deny_hosts=("localhost",)).check(
        "http://localhost/"
    )


def test_a_bad_network_is_named() -> None:
    with pytest.raises(ValueError, match="not a network: 'ten'"):
        UrlPolicy(deny_networks=("ten",))


@pytest.mark.parametrize("host", ["0xa9.0xfe.0xa9.0xfe", "169.254.43518", "0251.254.169.254"])
async def test_short_and_mixed_numeric_forms_are_read_as_the_resolver_reads_them(
    host: str,
) -> None:
    with pytest.raises(PolicyViolation, match=r"169\.254\.169\.254"):
        await UrlPolicy().check(f"http://{host}/")


def test_an_octal_url_httpx_refuses_is_left_to_the_guard() -> None:
    from orchestrion.handlers.http import HttpConfig

    # Validation accepts it so that the guard, not a parse error, decides (policy_violation).
    assert HttpConfig.model_validate({"url": "http://0251.0376.0251.0376/"}).url
    with pytest.raises(ValueError, match="invalid URL"):
        HttpConfig.model_validate({"url": "http://0999.1.1.1/"})


class _Inner(httpcore.AsyncNetworkBackend):
    """Records where it is asked to connect; refuses ``refuse``, times out on ``silent``."""

    def __init__(self, refuse: tuple[str, ...] = (), silent: tuple[str, ...] = ()) -> None:
        self.calls: list[tuple[str, int]] = []
        self.timeouts: list[float | None] = []
        self.refuse, self.silent = refuse, silent

    async def connect_tcp(self, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((host, port))
        if host in self.refuse:
            raise httpcore.ConnectError("refused")
        if host in self.silent:
            raise httpcore.ConnectTimeout("no answer")
        self.timeouts.append(args[0] if args else kwargs.get("timeout"))
        return "stream"


def _table(answers: dict[str, list[str]]) -> Any:
    async def resolve(host: str, port: int) -> list[str]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return answers[host]

    return resolve


async def test_the_pinned_backend_connects_to_checked_addresses_never_to_the_name() -> None:
    policy = UrlPolicy(resolver=_table({"a.test": ["10.0.0.7", "10.0.0.7", "10.0.0.8"]}))
    inner = _Inner(refuse=("10.0.0.7",))
    stream = await PinnedBackend(lambda: policy, inner).connect_tcp("a.test", 8080, timeout=5)
    assert stream == "stream"
    # Duplicates (one per protocol from getaddrinfo) are tried once; a refusal falls through.
    assert inner.calls == [("10.0.0.7", 8080), ("10.0.0.8", 8080)]


async def test_an_address_that_does_not_answer_leaves_time_for_the_next() -> None:
    policy = UrlPolicy(resolver=_table({"six.test": ["2001:db8::1", "192.0.2.1"]}))
    inner = _Inner(silent=("2001:db8::1",))
    await PinnedBackend(lambda: policy, inner).connect_tcp("six.test", 443, timeout=10)
    assert inner.calls == [("2001:db8::1", 443), ("192.0.2.1", 443)]
    assert inner.timeouts[0] is not None and 9 < inner.timeouts[0] <= 10  # the last gets all


async def test_the_pinned_backend_refuses_before_connecting_anywhere() -> None:
    policy = UrlPolicy(resolver=_table({"mixed.test": ["10.0.0.7", "169.254.169.254"]}))
    inner = _Inner()
    with pytest.raises(PolicyViolation, match=r"169\.254\.169\.254"):
        await PinnedBackend(lambda: policy, inner).connect_tcp("mixed.test", 80)
    with pytest.raises(PolicyViolation, match="denied host"):
        await PinnedBackend(lambda: policy, inner).connect_tcp("metadata.google.internal", 80)
    with pytest.raises(PolicyViolation):
        await PinnedBackend(lambda: policy, inner).connect_tcp("0xa9fea9fe", 80)
    assert inner.calls == []


async def test_the_pinned_backend_without_a_policy_connects_by_name() -> None:
    inner = _Inner()
    await PinnedBackend(lambda: None, inner).connect_tcp("a.test", 80)
    assert inner.calls == [("a.test", 80)]


async def test_a_name_that_does_not_resolve_is_a_connect_error() -> None:
    policy = UrlPolicy(resolver=_table({}))
    with pytest.raises(httpcore.ConnectError, match="not known"):
        await PinnedBackend(lambda: policy, _Inner()).connect_tcp("gone.test", 80)
    await policy.check("http://gone.test/")  # the pre-check leaves it to the connection


def test_a_policy_is_a_value() -> None:
    # A frozen dataclass: equal settings are equal policies; the derived tables take no part.
    assert UrlPolicy() == UrlPolicy() and hash(UrlPolicy()) == hash(UrlPolicy())
    assert UrlPolicy() != UrlPolicy(deny_reserved=False)
