"""The SSRF guard: a corpus of targets that must be refused, and ones that must pass (issue #6).

Every target here is refused before any connection is made; numeric spellings are resolved
by the local resolver (no DNS traffic).
"""

from __future__ import annotations

import pytest

from orchestrion.errors import PolicyViolation
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
