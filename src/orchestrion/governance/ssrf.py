"""The SSRF guard of the http handler: where a workflow's requests may go.

``UrlPolicy.check(url)`` runs before every request and every redirect hop (the http handler's
``url_guard`` hook). It refuses, as a ``PolicyViolation`` (not retried):

- host names on the deny list (cloud metadata names by default: ``metadata.google.internal``,
  ``metadata``, ``instance-data``...), unless allowed by name;
- every address the host resolves to (after DNS, so a name pointing at a forbidden address
  is refused too) that falls in a denied network: link-local (169.254.0.0/16, fe80::/10,
  which holds the metadata address 169.254.169.254) and AWS's fd00:ec2::254 by default, plus
  whatever is configured (private ranges, loopback). IPv4-mapped IPv6 addresses are checked
  as the IPv4 address they carry, and numeric spellings (decimal ``2852039166``, hex, octal)
  are what the resolver makes of them.

An allow list of networks, when given, admits only those addresses.

The check alone would leave a gap: httpx resolves the name again to connect, and a DNS server
that answers a public address to the check and 169.254.169.254 to the connection (DNS
rebinding) would get through. ``governance/pinning.py`` closes it: the shared http client
connects through ``PinnedBackend``, which resolves the name itself, checks every address with
the same policy and connects to those checked addresses only, never to the name.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from orchestrion.errors import PolicyViolation

__all__ = [
    "DEFAULT_DENY_HOSTS",
    "DEFAULT_DENY_NETWORKS",
    "Resolver",
    "UrlPolicy",
    "system_resolver",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Iterable[str]]]
"""``async (host, port) -> addresses`` (as text) of a name; raises ``OSError`` when it has none."""

DEFAULT_DENY_NETWORKS = ("169.254.0.0/16", "fe80::/10", "fd00:ec2::254/128")
DEFAULT_DENY_HOSTS = (
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
)
_NUMERIC = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)
PRIVATE_NETWORKS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
"""Networks a policy can name at once with ``deny_private=True``."""


def _networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    parsed = []
    for item in items:
        try:
            parsed.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {item!r} ({exc})") from exc
    return tuple(parsed)


@dataclass(frozen=True)
class UrlPolicy:
    """Deny and allow lists of hosts and networks; see the module docstring."""

    deny_networks: tuple[str, ...] = DEFAULT_DENY_NETWORKS
    allow_networks: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = DEFAULT_DENY_HOSTS
    allow_hosts: tuple[str, ...] = ()
    deny_private: bool = False
    deny_loopback: bool = False
    resolver: Resolver | None = field(default=None, compare=False, repr=False)
    """How names are resolved (``None``: the system's ``getaddrinfo``); a seam for tests."""
    _deny: tuple[IPNetwork, ...] = field(init=False, repr=False)
    _allow: tuple[IPNetwork, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        deny = list(self.deny_networks)
        if self.deny_private:
            deny += PRIVATE_NETWORKS
        if self.deny_loopback:
            deny += ("127.0.0.0/8", "::1/128")
        object.__setattr__(self, "_deny", _networks(deny))
        object.__setattr__(self, "_allow", _networks(self.allow_networks))

    async def __call__(self, url: str) -> None:
        await self.check(url)

    async def check(self, url: str) -> None:
        """Raise ``PolicyViolation`` when ``url`` may not be requested."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise PolicyViolation(f"blocked request: unreadable URL ({exc})") from exc
        # A name that does not resolve has nothing to connect to: the request itself then
        # fails with a clear error.
        with contextlib.suppress(OSError):
            await self.addresses(host, port)

    async def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses of ``host`` the policy admits, in the resolver's order.

        Raises ``PolicyViolation`` when the name is denied or any of its addresses is (one
        bad address refuses them all: which one a connection would use is not ours to pick),
        and ``OSError`` when the name does not resolve.
        """
        host = host.rstrip(".").lower()
        if not host:
            raise PolicyViolation("blocked request: the URL has no host")
        allowed_by_name = host in {h.lower() for h in self.allow_hosts}
        if not allowed_by_name and host in {h.lower() for h in self.deny_hosts}:
            raise PolicyViolation(f"blocked request to {host}: a denied host (SSRF guard)")
        addresses = await _resolve(host, port, self.resolver or system_resolver)
        for address in addresses:
            self._check_address(host, address)
        return addresses

    def _check_address(self, host: str, address: IPAddress) -> None:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        for network in self._deny:
            if address.version == network.version and address in network:
                raise PolicyViolation(
                    f"blocked request to {host} ({address}): {network} is denied (SSRF guard)"
                )
        if self._allow and not any(
            address.version == n.version and address in n for n in self._allow
        ):
            raise PolicyViolation(
                f"blocked request to {host} ({address}): not in an allowed network (SSRF guard)"
            )


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``getaddrinfo`` gives for ``host`` (raises ``socket.gaierror``)."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _resolve(host: str, port: int, resolver: Resolver) -> list[IPAddress]:
    """Every address of ``host`` (a literal is its own), as the connection would see them."""
    literal = host[1:-1] if host.startswith("[") else host
    try:
        return [ipaddress.ip_address(literal)]
    except ValueError:
        pass
    if _NUMERIC.match(literal):
        # Decimal, octal, hex and short forms (2852039166, 0251.0376.0251.0376, 0xa9fea9fe):
        # read as the C resolver reads them, whatever the resolver of this host does.
        try:
            return [ipaddress.IPv4Address(socket.inet_aton(literal))]
        except OSError:
            pass
    addresses: list[IPAddress] = []
    for raw in await resolver(host, port):
        address = ipaddress.ip_address(raw.split("%", 1)[0])  # drop an IPv6 zone
        if address not in addresses:  # getaddrinfo repeats an address per protocol
            addresses.append(address)
    return addresses
