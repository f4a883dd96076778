"""What an IP address reaches: the one classifier of the SSRF guard.

``reach(address)`` gives every address a connection to ``address`` may end up at, each with
its ``AddressCategory``:

- an IPv4 address, or an IPv6 address of no embedding form, reaches itself;
- the unspecified addresses (0.0.0.0/8, ``::``) reach the local host: the kernel connects a
  socket aimed at them to the loopback address (127.0.0.1, ``::1``), so they reach that too;
- an IPv6 address that carries an IPv4 address reaches that IPv4 address: IPv4-mapped
  (``::ffff:0:0/96``), IPv4-compatible (``::/96``), IPv4-translated (``::ffff:0:0:0/96``),
  NAT64 (``64:ff9b::/96``, and the local-use ``64:ff9b:1::/48`` in each RFC 6052 layout
  its prefix allows), 6to4 (``2002::/16``), Teredo (``2001::/32``: both the server and the
  obfuscated client) and ISATAP interface identifiers (``::5efe:a.b.c.d``, which reach the
  IPv6 address as well as the IPv4 tunnel end).

Categories follow the IANA IPv4 and IPv6 special-purpose address registries and address
space registries; a block the registries call globally reachable is ``GLOBAL``. The policy
(``governance/ssrf.py``) decides which categories it refuses; this module only says what an
address is.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache

__all__ = ["AddressCategory", "Reached", "category_of", "reach"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class AddressCategory(StrEnum):
    """What kind of destination an address is."""

    GLOBAL = "global"
    UNSPECIFIED = "unspecified"  # 0.0.0.0/8, ::  (reaches the local host)
    LOOPBACK = "loopback"
    PRIVATE = "private"  # RFC 1918, unique-local fc00::/7, deprecated site-local fec0::/10
    SHARED = "shared"  # carrier-grade NAT, 100.64.0.0/10
    LINK_LOCAL = "link_local"
    PROTOCOL = "protocol"  # IETF protocol assignments that are not globally reachable
    DOCUMENTATION = "documentation"
    BENCHMARKING = "benchmarking"
    MULTICAST = "multicast"
    BROADCAST = "broadcast"
    RESERVED = "reserved"  # reserved or unallocated space, discard-only, deprecated blocks


@dataclass(frozen=True, slots=True)
class Reached:
    """One address a connection may reach, its category, the block that says so, and how."""

    address: IPAddress
    category: AddressCategory
    block: IPNetwork
    via: str = ""
    """Empty for the address itself, else how it is reached (``"IPv4-mapped"``, ``"6to4"``...)."""


_C = AddressCategory
# The most specific block containing an address decides its category; anything in no block
# of its family is GLOBAL for IPv4 and RESERVED for IPv6 (outside the unicast allocations).
_IPV4_BLOCKS: tuple[tuple[str, AddressCategory], ...] = (
    ("0.0.0.0/8", _C.UNSPECIFIED),
    ("10.0.0.0/8", _C.PRIVATE),
    ("100.64.0.0/10", _C.SHARED),
    ("127.0.0.0/8", _C.LOOPBACK),
    ("169.254.0.0/16", _C.LINK_LOCAL),
    ("172.16.0.0/12", _C.PRIVATE),
    ("192.0.0.0/24", _C.PROTOCOL),
    ("192.0.0.9/32", _C.GLOBAL),  # Port Control Protocol anycast
    ("192.0.0.10/32", _C.GLOBAL),  # TURN anycast
    ("192.0.2.0/24", _C.DOCUMENTATION),
    ("192.88.99.0/24", _C.PROTOCOL),  # deprecated 6to4 relay anycast
    ("192.168.0.0/16", _C.PRIVATE),
    ("198.18.0.0/15", _C.BENCHMARKING),
    ("198.51.100.0/24", _C.DOCUMENTATION),
    ("203.0.113.0/24", _C.DOCUMENTATION),
    ("224.0.0.0/4", _C.MULTICAST),
    ("240.0.0.0/4", _C.RESERVED),
    ("255.255.255.255/32", _C.BROADCAST),
)
_IPV6_BLOCKS: tuple[tuple[str, AddressCategory], ...] = (
    ("::/128", _C.UNSPECIFIED),
    ("::1/128", _C.LOOPBACK),
    ("100::/64", _C.RESERVED),  # discard-only
    ("100:0:0:1::/64", _C.PROTOCOL),  # dummy prefix
    ("2000::/3", _C.GLOBAL),
    ("2001::/23", _C.PROTOCOL),
    ("2001:1::1/128", _C.GLOBAL),  # Port Control Protocol anycast
    ("2001:1::2/128", _C.GLOBAL),  # TURN anycast
    ("2001:1::3/128", _C.GLOBAL),  # DNS-SD service registration anycast
    ("2001:2::/48", _C.BENCHMARKING),
    ("2001:3::/32", _C.GLOBAL),  # AMT
    ("2001:4:112::/48", _C.GLOBAL),  # AS112
    ("2001:10::/28", _C.RESERVED),  # deprecated ORCHID
    ("2001:20::/28", _C.GLOBAL),  # ORCHIDv2
    ("2001:30::/28", _C.GLOBAL),  # drone remote ID
    ("2001:db8::/32", _C.DOCUMENTATION),
    ("3fff::/20", _C.DOCUMENTATION),
    ("5f00::/16", _C.PROTOCOL),  # segment routing SIDs
    ("fc00::/7", _C.PRIVATE),
    ("fe80::/10", _C.LINK_LOCAL),
    ("fec0::/10", _C.PRIVATE),  # deprecated site-local
    ("ff00::/8", _C.MULTICAST),
)
# IPv6 blocks whose addresses carry an IPv4 address (their own category is what that one is).
_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")
_COMPATIBLE = ipaddress.IPv6Network("::/96")
_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")
_SIX_TO_FOUR = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_IPV4_LOOPBACK = ipaddress.IPv4Address("127.0.0.1")
_IPV6_LOOPBACK = ipaddress.IPv6Address("::1")
_V4 = 0xFFFFFFFF


@lru_cache(maxsize=2)
def _table(version: int) -> tuple[tuple[IPNetwork, AddressCategory], ...]:
    rows = _IPV4_BLOCKS if version == 4 else _IPV6_BLOCKS
    parsed = [(ipaddress.ip_network(block), category) for block, category in rows]
    # Most specific first: the first block that contains an address decides.
    return tuple(sorted(parsed, key=lambda row: -row[0].prefixlen))


def category_of(address: IPAddress) -> tuple[AddressCategory, IPNetwork]:
    """The category of ``address`` itself (embedded addresses aside) and its deciding block."""
    address = _unscoped(address)
    for block, category in _table(address.version):
        if address in block:
            return category, block
    if address.version == 4:
        return _C.GLOBAL, ipaddress.IPv4Network("0.0.0.0/0")
    return _C.RESERVED, ipaddress.IPv6Network("::/0")


def reach(address: IPAddress) -> tuple[Reached, ...]:
    """Every address a connection to ``address`` may reach, with its category (module doc)."""
    address = _unscoped(address)
    if not isinstance(address, ipaddress.IPv6Address) or int(address) in (0, 1):
        return _plain(address)  # IPv4, or :: and ::1 (in ::/96, yet no IPv4 address)
    carried, itself = _embedded(address)
    found = list(_plain(address)) if itself else []
    for ipv4, via in carried:
        for reached in _with_via(_plain(ipv4), via):
            if all(reached.address != seen.address for seen in found):
                found.append(reached)
    return tuple(found)


def _plain(address: IPAddress) -> tuple[Reached, ...]:
    category, block = category_of(address)
    own = Reached(address, category, block)
    if category is not _C.UNSPECIFIED:
        return (own,)
    loopback = _IPV4_LOOPBACK if address.version == 4 else _IPV6_LOOPBACK
    loopback_category, loopback_block = category_of(loopback)
    return (own, Reached(loopback, loopback_category, loopback_block, "the local host"))


def _with_via(found: tuple[Reached, ...], via: str) -> list[Reached]:
    return [
        Reached(r.address, r.category, r.block, f"{via}, {r.via}" if r.via else via) for r in found
    ]


def _embedded(
    address: ipaddress.IPv6Address,
) -> tuple[list[tuple[ipaddress.IPv4Address, str]], bool]:
    """The IPv4 addresses ``address`` carries, each with the name of its form, and whether
    the IPv6 address is reached as well (only ISATAP's is: the others stand for the IPv4)."""
    value = int(address)
    v4 = ipaddress.IPv4Address
    if address in _MAPPED:
        return [(v4(value & _V4), "IPv4-mapped")], False
    if address in _TRANSLATED:
        return [(v4(value & _V4), "IPv4-translated")], False
    if address in _COMPATIBLE:
        return [(v4(value & _V4), "IPv4-compatible")], False
    if address in _NAT64:
        return [(v4(value & _V4), "NAT64")], False
    if address in _NAT64_LOCAL:
        return [(v4(candidate), "NAT64") for candidate in _nat64_local(value)], False
    if address in _SIX_TO_FOUR:
        return [(v4((value >> 80) & _V4), "6to4")], False
    if address in _TEREDO:
        server = v4((value >> 64) & _V4)
        client = v4(~value & _V4)  # the client address is stored inverted
        return [(server, "Teredo server"), (client, "Teredo client")], False
    # ISATAP: the interface identifier [02]00:5efe:a.b.c.d (the 0x03 bits of its top octet
    # say local or global) names the IPv4 end of the tunnel the address is reached through.
    if (value >> 32) & 0xFCFFFFFF == 0x00005EFE:
        return [(v4(value & _V4), "ISATAP")], True
    return [], True


def _nat64_local(value: int) -> list[int]:
    """The IPv4 addresses an address of 64:ff9b:1::/48 may carry (RFC 6052 section 2.2).

    The operator picks the prefix length inside the /48 (48, 56, 64 or 96 bits), and the
    address does not say which: every layout the address fits is read, so that the
    translator's reading, whichever it is, is among them. A shorter layout fits when the
    suffix it leaves is zero, as the RFC requires (the reserved octet u at bits 64-71 is
    not relied on). The /96 reading (the last 32 bits) always counts, except as 0.0.0.0
    where a shorter layout fits: that is the shorter layout's zero suffix, and a
    translator does not forward to 0.0.0.0.
    """

    def bits(start: int, count: int) -> int:  # bit 0 is the most significant
        return (value >> (128 - start - count)) & ((1 << count) - 1)

    candidates: list[int] = []
    layouts = (
        ((48, 16), (72, 16), (88, 40)),  # /48: 16 bits, u, 16 bits, suffix
        ((56, 8), (72, 24), (96, 32)),  # /56: 8 bits, u, 24 bits, suffix
        ((72, 32), (104, 24)),  # /64: u, 32 bits, suffix
    )
    for layout in layouts:
        *parts, (suffix_start, suffix_bits) = layout
        if bits(suffix_start, suffix_bits):
            continue
        ipv4 = 0
        for start, count in parts:
            ipv4 = (ipv4 << count) | bits(start, count)
        if ipv4 not in candidates:
            candidates.append(ipv4)
    last = value & _V4
    if (last or not candidates) and last not in candidates:
        candidates.append(last)
    return candidates


def _unscoped(address: IPAddress) -> IPAddress:
    """``address`` without an IPv6 zone (``fe80::1%eth0``), which changes nothing it reaches."""
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(int(address))
    return address
