"""The SSRF guard of the http and llm handlers: where a workflow's requests may go.

``UrlPolicy.check(url)`` runs before every request and every redirect hop (the handlers'
``url_guard`` hook). It refuses, as a ``PolicyViolation`` (not retried):

- host names on the deny list (cloud metadata names by default: ``metadata.google.internal``,
  ``metadata``, ``instance-data``...), unless allowed by name;
- every address the host resolves to (after DNS, so a name pointing at a forbidden address
  is refused too) that reaches a denied category or network. What an address reaches is
  ``governance/addresses.py``'s one answer: itself, the IPv4 address an IPv6 form carries
  (mapped, compatible, translated, NAT64, 6to4, Teredo, ISATAP), and for the unspecified
  addresses (0.0.0.0/8, ``::``) the local host's loopback address as well. Categories:
  ``deny_loopback`` refuses loopback and unspecified, ``deny_private`` every other address
  that is not globally reachable (private, shared, link-local, protocol, documentation,
  benchmarking), ``deny_reserved`` (on by default) unspecified, multicast, broadcast and
  reserved space. ``deny_networks`` adds networks (link-local, AWS's fd00:ec2::254 and
  Alibaba's 100.100.100.200 by default). Numeric spellings (decimal ``2852039166``, hex,
  octal, short) are what the C resolver makes of them.

An allow list of networks, when given, admits only those addresses.

The check alone would leave a gap: httpx resolves the name again to connect, and a DNS server
that answers a public address to the check and 169.254.169.254 to the connection (DNS
rebinding) would get through. ``governance/pinning.py`` closes it: the shared http client
connects through ``PinnedBackend``, which resolves the name itself, checks every address with
the same ``check_address`` and connects to those checked addresses only, never to the name.
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
from orchestrion.governance.addresses import AddressCategory, reach

__all__ = [
    "DEFAULT_DENY_HOSTS",
    "DEFAULT_DENY_NETWORKS",
    "LOOPBACK_CATEGORIES",
    "PRIVATE_CATEGORIES",
    "RESERVED_CATEGORIES",
    "Resolver",
    "UrlPolicy",
    "system_resolver",
]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[Iterable[str]]]
"""``async (host, port) -> addresses`` (as text) of a name; raises ``OSError`` when it has none."""

DEFAULT_DENY_NETWORKS = (
    "169.254.0.0/16",
    "fe80::/10",
    "fd00:ec2::254/128",
    "100.100.100.200/32",
)
"""Link-local (169.254.169.254 is most clouds' metadata service), AWS's IPv6 metadata
address and Alibaba Cloud's, which sits in the shared 100.64.0.0/10 space."""
DEFAULT_DENY_HOSTS = (
    "metadata.google.internal",
    "metadata.goog",
    "metadata",
    "instance-data",
    "instance-data.ec2.internal",
    "metadata.azure.com",
)
_NUMERIC = re.compile(r"^(?:0x[0-9a-f]+|[0-9]+)(?:\.(?:0x[0-9a-f]+|[0-9]+)){0,3}$", re.IGNORECASE)
_C = AddressCategory
LOOPBACK_CATEGORIES = frozenset({_C.LOOPBACK, _C.UNSPECIFIED})
"""What ``deny_loopback`` refuses: the local host, by its loopback or unspecified addresses."""
PRIVATE_CATEGORIES = frozenset(
    {_C.PRIVATE, _C.SHARED, _C.LINK_LOCAL, _C.PROTOCOL, _C.DOCUMENTATION, _C.BENCHMARKING}
)
"""What ``deny_private`` refuses: every other address that is not globally reachable."""
RESERVED_CATEGORIES = frozenset({_C.UNSPECIFIED, _C.MULTICAST, _C.BROADCAST, _C.RESERVED})
"""What ``deny_reserved`` (on by default) refuses: addresses no request should be sent to."""


def _networks(items: Iterable[str]) -> tuple[IPNetwork, ...]:
    parsed = []
    for item in items:
        try:
            parsed.append(ipaddress.ip_network(item, strict=False))
        except ValueError as exc:
            raise ValueError(f"not a network: {item!r} ({exc})") from exc
    return tuple(parsed)


def _in_any(address: IPAddress, networks: Iterable[IPNetwork]) -> IPNetwork | None:
    for network in networks:
        if address.version == network.version and address in network:
            return network
    return None


@dataclass(frozen=True)
class UrlPolicy:
    """Deny and allow lists of hosts, networks and address categories; see the module doc."""

    deny_networks: tuple[str, ...] = DEFAULT_DENY_NETWORKS
    allow_networks: tuple[str, ...] = ()
    deny_hosts: tuple[str, ...] = DEFAULT_DENY_HOSTS
    allow_hosts: tuple[str, ...] = ()
    deny_private: bool = False
    deny_loopback: bool = False
    deny_reserved: bool = True
    resolver: Resolver | None = field(default=None, compare=False, repr=False)
    """How names are resolved (``None``: the system's ``getaddrinfo``); a seam for tests."""
    _deny: tuple[IPNetwork, ...] = field(init=False, repr=False)
    _allow: tuple[IPNetwork, ...] = field(init=False, repr=False)
    _denied: dict[AddressCategory, str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_deny", _networks(self.deny_networks))
        object.__setattr__(self, "_allow", _networks(self.allow_networks))
        denied: dict[AddressCategory, list[str]] = {}
        for setting, on, categories in (
            ("deny_loopback", self.deny_loopback, LOOPBACK_CATEGORIES),
            ("deny_private", self.deny_private, PRIVATE_CATEGORIES),
            ("deny_reserved", self.deny_reserved, RESERVED_CATEGORIES),
        ):
            for category in categories if on else ():
                denied.setdefault(category, []).append(setting)
        object.__setattr__(self, "_denied", {c: ", ".join(s) for c, s in denied.items()})

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
            self.check_address(address, host)
        return addresses

    def refuses(self, address: IPAddress) -> bool:
        """Whether a connection to ``address`` is refused (``check_address`` raises)."""
        try:
            self.check_address(address)
        except PolicyViolation:
            return True
        return False

    def check_address(self, address: IPAddress, host: str | None = None) -> None:
        """Raise ``PolicyViolation`` unless every address ``address`` reaches is admitted.

        What it reaches (``governance/addresses.py``): itself, the IPv4 address an IPv6 form
        carries, the loopback address behind an unspecified one. A denied category or network
        of any of them refuses it; an allow list must hold ``address`` itself or all of them.
        """
        reached = reach(address)
        for found in reached:
            where = str(address)
            if found.via:
                where = f"{address}, which reaches {found.address} as {found.via}"
            target = f"{host or address} ({where})"
            settings = self._denied.get(found.category)
            if settings is not None:
                kind = found.category.value.replace("_", "-") + " address"
                if found.category is AddressCategory.UNSPECIFIED:
                    kind += ", which reaches this host"
                raise PolicyViolation(
                    f"blocked request to {target}: {found.block} is denied "
                    f"({kind}: {settings}) (SSRF guard)"
                )
            network = _in_any(found.address, self._deny)
            if network is not None:
                raise PolicyViolation(
                    f"blocked request to {target}: {network} is denied (SSRF guard)"
                )
        target = f"{host or address} ({address})"
        network = _in_any(address, self._deny)  # the IPv6 form itself, e.g. 2002::/16
        if network is not None:
            raise PolicyViolation(f"blocked request to {target}: {network} is denied (SSRF guard)")
        if (
            self._allow
            and _in_any(address, self._allow) is None
            and not all(_in_any(found.address, self._allow) for found in reached)
        ):
            raise PolicyViolation(
                f"blocked request to {target}: not in an allowed network (SSRF guard)"
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
