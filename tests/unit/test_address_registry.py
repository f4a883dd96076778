"""The SSRF classifier against the IANA special-purpose address registries.

The registries' entries are written below as data (block, name, "globally reachable" as the
registry states it, None where it says N/A, and the category the guard gives the block),
with the rest of the IPv4 and IPv6 address space registries the guard must know (multicast,
site-local, the IPv6 space reserved by the IETF) and the IPv6 forms that carry an IPv4
address. For every block, its first, last and middle address is classified, the answer is
compared with the most specific block's row (or, for a form that carries an IPv4 address,
with that IPv4 address's row, read out here independently of the classifier), and every
combination of the policy's category settings is asserted to refuse exactly the categories
it names. With every setting on, the guard refuses exactly what the registry calls not
globally reachable.

Hypothesis then builds the embedded forms (mapped, compatible, translated, NAT64, 6to4,
Teredo, ISATAP) of IPv4 addresses and asserts each is refused exactly as the plain address.
Nothing here touches the network.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections.abc import Callable, Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from orchestrion.errors import PolicyViolation
from orchestrion.governance.addresses import AddressCategory, reach
from orchestrion.governance.ssrf import UrlPolicy

C = AddressCategory
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
EMBEDS = "embeds"  # the category is that of the IPv4 address the form carries

# IANA IPv4 Special-Purpose Address Registry, then the IPv4 address space registry's multicast.
IPV4_REGISTRY: list[tuple[str, str, bool | None, C]] = [
    ("0.0.0.0/8", "This network", False, C.UNSPECIFIED),
    ("0.0.0.0/32", "This host on this network", False, C.UNSPECIFIED),
    ("10.0.0.0/8", "Private-Use", False, C.PRIVATE),
    ("100.64.0.0/10", "Shared Address Space", False, C.SHARED),
    ("127.0.0.0/8", "Loopback", False, C.LOOPBACK),
    ("169.254.0.0/16", "Link Local", False, C.LINK_LOCAL),
    ("172.16.0.0/12", "Private-Use", False, C.PRIVATE),
    ("192.0.0.0/24", "IETF Protocol Assignments", False, C.PROTOCOL),
    ("192.0.0.0/29", "IPv4 Service Continuity Prefix", False, C.PROTOCOL),
    ("192.0.0.8/32", "IPv4 dummy address", False, C.PROTOCOL),
    ("192.0.0.9/32", "Port Control Protocol Anycast", True, C.GLOBAL),
    ("192.0.0.10/32", "Traversal Using Relays around NAT Anycast", True, C.GLOBAL),
    ("192.0.0.170/32", "NAT64/DNS64 Discovery", False, C.PROTOCOL),
    ("192.0.0.171/32", "NAT64/DNS64 Discovery", False, C.PROTOCOL),
    ("192.0.2.0/24", "Documentation (TEST-NET-1)", False, C.DOCUMENTATION),
    ("192.31.196.0/24", "AS112-v4", True, C.GLOBAL),
    ("192.52.193.0/24", "AMT", True, C.GLOBAL),
    ("192.88.99.0/24", "Deprecated (6to4 Relay Anycast)", None, C.PROTOCOL),
    ("192.168.0.0/16", "Private-Use", False, C.PRIVATE),
    ("192.175.48.0/24", "Direct Delegation AS112 Service", True, C.GLOBAL),
    ("198.18.0.0/15", "Benchmarking", False, C.BENCHMARKING),
    ("198.51.100.0/24", "Documentation (TEST-NET-2)", False, C.DOCUMENTATION),
    ("203.0.113.0/24", "Documentation (TEST-NET-3)", False, C.DOCUMENTATION),
    ("240.0.0.0/4", "Reserved", False, C.RESERVED),
    ("255.255.255.255/32", "Limited Broadcast", False, C.BROADCAST),
    # The IPv4 address space registry: multicast is no unicast destination.
    ("224.0.0.0/4", "Multicast", False, C.MULTICAST),
    # Ordinary unicast space: everything else, and the neighbours of the special blocks.
    ("0.0.0.0/0", "Unicast", True, C.GLOBAL),
    ("1.0.0.0/8", "Unicast (APNIC)", True, C.GLOBAL),
    ("8.0.0.0/8", "Unicast (Level 3)", True, C.GLOBAL),
    ("100.0.0.0/10", "Unicast below the shared space", True, C.GLOBAL),
    ("100.128.0.0/9", "Unicast above the shared space", True, C.GLOBAL),
    ("172.32.0.0/11", "Unicast above 172.16/12", True, C.GLOBAL),
    ("223.0.0.0/8", "Unicast below multicast", True, C.GLOBAL),
]

# IANA IPv6 Special-Purpose Address Registry, then the IPv6 address space registry's other
# blocks and the older forms that carry an IPv4 address.
IPV6_REGISTRY: list[tuple[str, str, bool | None, C | str]] = [
    ("::1/128", "Loopback Address", False, C.LOOPBACK),
    ("::/128", "Unspecified Address", False, C.UNSPECIFIED),
    ("::ffff:0:0/96", "IPv4-mapped Address", False, EMBEDS),
    ("64:ff9b::/96", "IPv4-IPv6 Translat.", True, EMBEDS),
    ("64:ff9b:1::/48", "IPv4-IPv6 Translat. (local use)", False, EMBEDS),
    ("100::/64", "Discard-Only Address Block", False, C.RESERVED),
    ("100:0:0:1::/64", "Dummy IPv6 Prefix", False, C.PROTOCOL),
    ("2001::/23", "IETF Protocol Assignments", False, C.PROTOCOL),
    ("2001::/32", "TEREDO", None, EMBEDS),
    ("2001:1::1/128", "Port Control Protocol Anycast", True, C.GLOBAL),
    ("2001:1::2/128", "Traversal Using Relays around NAT Anycast", True, C.GLOBAL),
    ("2001:1::3/128", "DNS-SD Service Registration Protocol Anycast", True, C.GLOBAL),
    ("2001:2::/48", "Benchmarking", False, C.BENCHMARKING),
    ("2001:3::/32", "AMT", True, C.GLOBAL),
    ("2001:4:112::/48", "AS112-v6", True, C.GLOBAL),
    ("2001:10::/28", "Deprecated (previously ORCHID)", None, C.RESERVED),
    ("2001:20::/28", "ORCHIDv2", True, C.GLOBAL),
    ("2001:30::/28", "Drone Remote ID Protocol Entity Tags (DETs) Prefix", True, C.GLOBAL),
    ("2001:db8::/32", "Documentation", False, C.DOCUMENTATION),
    ("2002::/16", "6to4", None, EMBEDS),
    ("2620:4f:8000::/48", "Direct Delegation AS112 Service", True, C.GLOBAL),
    ("3fff::/20", "Documentation", False, C.DOCUMENTATION),
    ("5f00::/16", "Segment Routing (SRv6) SIDs", False, C.PROTOCOL),
    ("fc00::/7", "Unique-Local", False, C.PRIVATE),
    ("fe80::/10", "Link-Local Unicast", False, C.LINK_LOCAL),
    # The IPv6 address space registry.
    ("2000::/3", "Global Unicast", True, C.GLOBAL),
    ("fec0::/10", "Site-local (deprecated)", False, C.PRIVATE),
    ("ff00::/8", "Multicast", False, C.MULTICAST),
    ("::/8", "Reserved by IETF", False, C.RESERVED),
    ("100::/8", "Reserved by IETF", False, C.RESERVED),
    ("200::/7", "Reserved by IETF", False, C.RESERVED),
    ("400::/6", "Reserved by IETF", False, C.RESERVED),
    ("800::/5", "Reserved by IETF", False, C.RESERVED),
    ("1000::/4", "Reserved by IETF", False, C.RESERVED),
    ("4000::/3", "Reserved by IETF", False, C.RESERVED),
    ("6000::/3", "Reserved by IETF", False, C.RESERVED),
    ("8000::/3", "Reserved by IETF", False, C.RESERVED),
    ("a000::/3", "Reserved by IETF", False, C.RESERVED),
    ("c000::/3", "Reserved by IETF", False, C.RESERVED),
    ("e000::/4", "Reserved by IETF", False, C.RESERVED),
    ("f000::/5", "Reserved by IETF", False, C.RESERVED),
    ("f800::/6", "Reserved by IETF", False, C.RESERVED),
    ("fe00::/9", "Reserved by IETF", False, C.RESERVED),
    # Forms that carry an IPv4 address, outside the special-purpose registry.
    ("::/96", "IPv4-compatible (deprecated)", False, EMBEDS),
    ("::ffff:0:0:0/96", "IPv4-translated (SIIT)", False, EMBEDS),
]

# What each setting refuses (docs/GOVERNANCE.md, "SSRF guard").
SETTINGS: dict[str, frozenset[C]] = {
    "deny_loopback": frozenset({C.LOOPBACK, C.UNSPECIFIED}),
    "deny_private": frozenset(
        {C.PRIVATE, C.SHARED, C.LINK_LOCAL, C.PROTOCOL, C.DOCUMENTATION, C.BENCHMARKING}
    ),
    "deny_reserved": frozenset({C.UNSPECIFIED, C.MULTICAST, C.BROADCAST, C.RESERVED}),
}
POLICIES = [
    (on, UrlPolicy(deny_networks=(), **{name: name in on for name in SETTINGS}))
    for on in (
        frozenset(chosen)
        for size in range(len(SETTINGS) + 1)
        for chosen in itertools.combinations(SETTINGS, size)
    )
]
EVERYTHING = UrlPolicy(deny_networks=(), deny_loopback=True, deny_private=True, deny_reserved=True)


def _row(address: IPAddress) -> tuple[str, str, bool | None, C | str]:
    """The most specific registry row that holds ``address``."""
    rows = IPV4_REGISTRY if address.version == 4 else IPV6_REGISTRY
    holding = [row for row in rows if address in ipaddress.ip_network(row[0])]
    assert holding, f"no registry row holds {address}"
    return max(holding, key=lambda row: ipaddress.ip_network(row[0]).prefixlen)


def _carried(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an embedding form carries, read with the standard library."""
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address.teredo is not None:
        return list(address.teredo)
    if address.sixtofour is not None:
        return [address.sixtofour]
    return [low]  # compatible, translated, NAT64 (the /96 reading of the local-use prefix)


def _expected(address: IPAddress) -> tuple[set[C], bool | None]:
    """The categories ``address`` reaches, and whether the registry calls that reachable."""
    _, _, reachable, category = _row(address)
    if category == EMBEDS:
        assert isinstance(address, ipaddress.IPv6Address)
        categories: set[C] = set()
        verdicts: list[bool | None] = []
        for ipv4 in _carried(address):
            found, verdict = _expected(ipv4)
            categories |= found
            verdicts.append(verdict)
        if None in verdicts:
            return categories, None
        return categories, all(v is True for v in verdicts)
    assert isinstance(category, C)
    if category is C.UNSPECIFIED:  # the kernel sends it to the local host
        return {C.UNSPECIFIED, C.LOOPBACK}, reachable
    return {category}, reachable


def _samples(rows: list[tuple[str, str, bool | None, C | str]]) -> Iterator[IPAddress]:
    for block, *_ in rows:
        network = ipaddress.ip_network(block)
        yield network.network_address
        yield network.network_address + network.num_addresses // 2
        yield network.broadcast_address


ADDRESSES = sorted(set(_samples(IPV4_REGISTRY + IPV6_REGISTRY)), key=lambda a: (a.version, a))


@pytest.mark.parametrize("address", ADDRESSES, ids=str)
def test_every_registry_block_is_classified_and_refused_as_its_category(
    address: IPAddress,
) -> None:
    categories, reachable = _expected(address)
    reached = {found.category for found in reach(address)}
    if _row(address)[0] == "64:ff9b:1::/48":
        # The local-use NAT64 prefix's layout is the operator's choice: every reading that
        # fits is taken, the /96 one among them.
        assert categories <= reached, (address, reached)
    else:
        assert reached == categories, (address, reached)
    for on, policy in POLICIES:
        denied = frozenset().union(*(SETTINGS[name] for name in on))
        assert policy.refuses(address) == bool(reached & denied), (address, sorted(on))
    if reachable is not None:
        assert EVERYTHING.refuses(address) == (not reachable), address


@pytest.mark.parametrize("address", ADDRESSES, ids=str)
def test_the_refusal_names_the_address_reached_and_the_setting(address: IPAddress) -> None:
    reached = reach(address)
    denied = [found for found in reached if found.category is not C.GLOBAL]
    if not denied:
        return
    with pytest.raises(PolicyViolation) as caught:
        EVERYTHING.check_address(address, "target.test")
    message = str(caught.value)
    first = denied[0]
    assert f"blocked request to target.test ({address}" in message
    assert f"{first.block} is denied" in message
    assert "SSRF guard" in message
    assert any(
        name in message for name, categories in SETTINGS.items() if first.category in categories
    )
    if first.via:
        assert f"which reaches {first.address} as {first.via}" in message


def test_the_default_policy_refuses_what_never_is_a_destination() -> None:
    default = UrlPolicy()
    for text in [
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "::ffff:0.0.0.0",
        "224.0.0.1",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
        "100::1",
        "169.254.169.254",
        "fe80::1",
    ]:
        assert default.refuses(ipaddress.ip_address(text)), text
    for text in ["127.0.0.1", "::1", "10.0.0.1", "8.8.8.8", "2606:4700::1111", "::ffff:8.8.8.8"]:
        assert not default.refuses(ipaddress.ip_address(text)), text


# --- embedded forms, generated -----------------------------------------------------------

SPECIAL_IPV4 = [row[0] for row in IPV4_REGISTRY]


@st.composite
def ipv4s(draw: st.DrawFn) -> ipaddress.IPv4Address:
    """Any IPv4 address, half of them from the special-purpose blocks (edges likely)."""
    if draw(st.booleans()):
        return ipaddress.IPv4Address(draw(st.integers(0, 2**32 - 1)))
    network = ipaddress.IPv4Network(draw(st.sampled_from(SPECIAL_IPV4)))
    edge = st.sampled_from([0, network.num_addresses - 1])
    offset = draw(st.one_of(edge, st.integers(0, network.num_addresses - 1)))
    return network.network_address + offset


def _global_ipv4(value: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address((8 << 24) | (value & 0xFFFFFF))  # in 8.0.0.0/8


def _bits(value: int, start: int, count: int) -> int:
    """``value`` placed at bit ``start`` (0 is the most significant) of an IPv6 address."""
    return (value & ((1 << count) - 1)) << (128 - start - count)


Embed = Callable[[ipaddress.IPv4Address, int], ipaddress.IPv6Address]


def _nat64_local(length: int) -> Embed:
    def embed(ipv4: ipaddress.IPv4Address, noise: int) -> ipaddress.IPv6Address:
        v4 = int(ipv4)
        value = int(ipaddress.IPv6Address("64:ff9b:1::"))
        if length == 48:
            value |= _bits(v4 >> 16, 48, 16) | _bits(v4, 72, 16)
        elif length == 56:
            value |= _bits(noise, 48, 8) | _bits(v4 >> 24, 56, 8) | _bits(v4, 72, 24)
        elif length == 64:
            value |= _bits(noise, 48, 16) | _bits(v4, 72, 32)
        else:  # 96: the operator's prefix bits, u octet zero
            value |= _bits(noise, 48, 16) | _bits(noise >> 16, 72, 24) | v4
        return ipaddress.IPv6Address(value)

    return embed


def _v6(prefix: str, ipv4: ipaddress.IPv4Address) -> ipaddress.IPv6Address:
    return ipaddress.IPv6Address(int(ipaddress.IPv6Address(prefix)) | int(ipv4))


EMBEDDINGS: dict[str, Embed] = {
    "mapped": lambda v4, _: _v6("::ffff:0:0", v4),
    "compatible": lambda v4, _: _v6("::", v4),
    "translated": lambda v4, _: _v6("::ffff:0:0:0", v4),
    "nat64": lambda v4, _: _v6("64:ff9b::", v4),
    "6to4": lambda v4, noise: ipaddress.IPv6Address(
        _bits(0x2002, 0, 16) | _bits(int(v4), 16, 32) | _bits(noise, 48, 80)
    ),
    "teredo-client": lambda v4, noise: ipaddress.IPv6Address(
        _bits(0x20010000, 0, 32)
        | _bits(int(_global_ipv4(noise)), 32, 32)  # a public Teredo server
        | _bits(noise >> 24, 64, 32)  # flags and obfuscated port
        | (~int(v4) & 0xFFFFFFFF)
    ),
    "teredo-server": lambda v4, noise: ipaddress.IPv6Address(
        _bits(0x20010000, 0, 32)
        | _bits(int(v4), 32, 32)
        | _bits(noise >> 24, 64, 32)
        | (~int(_global_ipv4(noise)) & 0xFFFFFFFF)
    ),
    "isatap": lambda v4, noise: ipaddress.IPv6Address(
        _bits(0x2A00_1450 + (noise & 0xFF), 0, 32)  # a global unicast prefix
        | _bits(noise >> 8, 32, 32)
        | _bits(0x0200_5EFE if noise & 1 else 0x5EFE, 64, 32)
        | int(v4)
    ),
}


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ipv4=ipv4s(),
    form=st.sampled_from(sorted(EMBEDDINGS)),
    noise=st.integers(0, 2**80 - 1),
)
def test_an_embedded_ipv4_address_is_refused_exactly_as_the_plain_one(
    ipv4: ipaddress.IPv4Address, form: str, noise: int
) -> None:
    if form == "compatible" and int(ipv4) <= 1:
        return  # ::0.0.0.0 and ::0.0.0.1 are :: and ::1, the registry's own entries
    embedded = EMBEDDINGS[form](ipv4, noise)
    for on, policy in [*POLICIES, (frozenset({"default"}), UrlPolicy())]:
        plain = policy.refuses(ipv4)
        assert policy.refuses(embedded) == plain, (str(embedded), form, sorted(on))
        if plain:
            with pytest.raises(PolicyViolation, match=f"which reaches {ipv4} as "):
                policy.check_address(embedded)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ipv4=ipv4s(), length=st.sampled_from([48, 56, 64, 96]), noise=st.integers(0, 2**40 - 1))
def test_a_denied_ipv4_address_in_any_local_nat64_layout_is_refused(
    ipv4: ipaddress.IPv4Address, length: int, noise: int
) -> None:
    if not int(ipv4):
        # Zero last 32 bits are read as a shorter layout's suffix when one fits, not as
        # 0.0.0.0, which a translator drops (a martian destination) rather than forwards.
        return
    embedded = _nat64_local(length)(ipv4, noise)
    assert any(found.address == ipv4 for found in reach(embedded)), str(embedded)
    for on, policy in POLICIES:
        if policy.refuses(ipv4):
            assert policy.refuses(embedded), (str(embedded), length, sorted(on))


def test_a_denied_network_holds_for_the_ipv4_address_a_form_carries() -> None:
    policy = UrlPolicy(deny_networks=("127.0.0.1/32", "::1/128"), deny_reserved=False)
    for text in [
        "127.0.0.1",
        "::ffff:127.0.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "0.0.0.0",
        "::",
        "::ffff:0:0",
        "::1",
    ]:
        with pytest.raises(PolicyViolation, match=r"(127\.0\.0\.1/32|::1/128) is denied"):
            policy.check_address(ipaddress.ip_address(text))
    assert not policy.refuses(ipaddress.ip_address("127.0.0.2"))
    # A network named in its IPv6 form is denied as such too.
    six = UrlPolicy(deny_networks=("2002::/16",))
    assert six.refuses(ipaddress.ip_address("2002:808:808::1"))


def test_an_allow_list_admits_a_form_by_the_address_it_carries() -> None:
    policy = UrlPolicy(allow_networks=("8.8.8.0/24",))
    assert not policy.refuses(ipaddress.ip_address("::ffff:8.8.8.8"))
    assert not policy.refuses(ipaddress.ip_address("2002:808:808::1"))
    assert policy.refuses(ipaddress.ip_address("::ffff:8.8.4.4"))
    assert policy.refuses(ipaddress.ip_address("2001:4860::8888"))
