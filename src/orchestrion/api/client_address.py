"""The address a request comes from: the peer's, or X-Forwarded-For behind trusted proxies.

By default the client address is the TCP peer's and ``X-Forwarded-For`` is ignored: anyone
can write that header, so believing it would let a caller pick its own address (and with it
its own rate-limit bucket). Behind a reverse proxy the peer is the proxy; the operator then
lists the proxies in ``ORCHESTRION_TRUSTED_PROXIES`` and, only when the peer is one of them,
the header is read from the right: the first address that is not a trusted proxy is the
client's. Entries that are not IP addresses stop the walk at the last trusted hop, so a
header never contributes a string that is not an address.

``address_bucket`` maps an address to the unit a limit applies to: an IPv4 address, or the
/64 network of an IPv6 address (one host usually holds a whole /64, and could otherwise
rotate through 2^64 addresses).
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import Scope

__all__ = ["TrustedProxies", "address_bucket", "client_address"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_UNKNOWN = "unknown"  # no peer (a test transport, a Unix socket)
_MAX_HOPS = 32  # X-Forwarded-For entries looked at, at most


class TrustedProxies:
    """The networks whose ``X-Forwarded-For`` is believed; empty: none."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = tuple(ipaddress.ip_network(n, strict=False) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.networks)


@functools.lru_cache(maxsize=1024)
def _parse(text: str) -> IPAddress | None:
    # Cached: a connection's every request names the same peer, and parsing an address was
    # a tenth of what the API's own layers cost a request. Bounded: new addresses only evict.
    text = text.strip()
    if text.startswith("[") and "]" in text:  # [v6]:port
        text = text[1 : text.index("]")]
    elif text.count(":") == 1:  # v4:port
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=1024)
def _text_of(address: IPAddress) -> str:
    # Cached as ``_parse`` is: writing an address out again on every request of a
    # connection cost as much as parsing it.
    return str(address)


def client_address(scope: Scope, proxies: TrustedProxies) -> str:
    """The client's IP address, normalised (``unknown`` when the transport has no peer)."""
    client = scope.get("client")
    peer = _parse(str(client[0])) if client else None
    if peer is None:
        return _UNKNOWN
    if not proxies or not proxies.trusts(peer):
        return _text_of(peer)
    hops: list[str] = []
    for value in Headers(scope=scope).getlist("x-forwarded-for"):
        hops.extend(value.split(","))
    current = peer
    for hop in reversed(hops[-_MAX_HOPS:]):
        address = _parse(hop)
        if address is None:
            break  # garbage: the last trusted hop is as far as we can tell
        current = address
        if not proxies.trusts(address):
            break
    return _text_of(current)


def address_bucket(address: str) -> str:
    """What a per-address limit counts: the address, or its /64 for IPv6."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)
