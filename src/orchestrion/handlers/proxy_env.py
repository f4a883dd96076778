"""The proxy variables of the environment, as httpx mount patterns.

A client with a transport of its own (the pinned one) no longer reads ``HTTP_PROXY``,
``HTTPS_PROXY``, ``ALL_PROXY`` and ``NO_PROXY``: this module reads them the way httpx does,
from the standard library's ``urllib.request.getproxies``, so that the client can mount them
again. ``NO_PROXY`` follows curl's rules: ``*`` turns every proxy off, an IP address or
``localhost`` matches that host, a name matches itself and its subdomains.
"""

from __future__ import annotations

import ipaddress
from urllib.request import getproxies

__all__ = ["environment_proxies"]


def _is_address(host: str, kind: type[ipaddress.IPv4Address | ipaddress.IPv6Address]) -> bool:
    try:
        kind(host.split("/")[0])
    except ValueError:
        return False
    return True


def environment_proxies() -> dict[str, str | None]:
    """Mount pattern -> proxy URL, or None for a host that goes direct (``NO_PROXY``)."""
    found = getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        proxy = found.get(scheme)
        if proxy:
            mounts[f"{scheme}://"] = proxy if "://" in proxy else f"http://{proxy}"
    for raw in found.get("no", "").split(","):
        host = raw.strip()
        if host == "*":
            return {}
        if not host:
            continue
        if "://" in host:
            mounts[host] = None
        elif _is_address(host, ipaddress.IPv4Address) or host.lower() == "localhost":
            mounts[f"all://{host}"] = None
        elif _is_address(host, ipaddress.IPv6Address):
            mounts[f"all://[{host}]"] = None
        else:
            mounts[f"all://*{host}"] = None
    return mounts
