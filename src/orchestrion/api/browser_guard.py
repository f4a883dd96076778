"""What the API asks of a request before routing, so that no web page its user visits can use it.

With no API keys (the default of a developer's ``orchestrion serve``) these rules are all that
stands between the API and any page open in the developer's browser:

- DNS rebinding: a page of ``attacker.example`` whose name is made to resolve to 127.0.0.1
  would read the API as its own origin. Its requests name ``attacker.example`` in ``Host``,
  so a server given a ``HostAllowList`` (``orchestrion serve`` always is) answers only the
  host names it holds: localhost names, the bound address and ``ORCHESTRION_ALLOWED_HOSTS``;
  any other is 421;
- cross-site requests: a page may make the browser send a POST without asking first (a CORS
  "simple request": ``text/plain``, a form, or no body). A state-changing call must therefore
  carry JSON or YAML, which a browser sends to another origin only after a preflight the API
  never grants (it sends no CORS headers), or no body at all: 415 otherwise. A browser that
  says the call comes from another site (``Sec-Fetch-Site``, or, from browsers without it,
  an ``Origin`` that names neither the request's host nor an allowed host) gets 403.

The last two apply to the API's paths (``/v1`` and the compatibility surfaces). Inbound
webhooks (``/v1/hooks/``) are exempt from them: other servers send them, with their own
content types, and their signature is what authenticates them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Receive, Scope, Send

from orchestrion.api.media import media_type_of
from orchestrion.api.problems import problem_response
from orchestrion.api.raw_headers import RequestHeaders
from orchestrion.api.surfaces import HOOKS_PREFIX, is_api_path

if TYPE_CHECKING:
    from orchestrion.api.context import ApiContext

__all__ = ["BODY_TYPES", "BrowserGuard", "HostAllowList"]

_MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_LOCAL_NAMES = ("localhost", "127.0.0.1", "::1")
_EVERY_ADDRESS = frozenset({"0.0.0.0", "::", ""})  # binding to every address
_YAML = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})
BODY_TYPES = "application/json (or application/yaml for a definition)"
_SAME_ORIGIN_FETCH = frozenset({"same-origin", "none"})  # "none": typed in the address bar
_HOSTS_SETTING = "ORCHESTRION_ALLOWED_HOSTS"


def _bare_host(value: str) -> str:
    """The host of a ``Host`` header value, without its port, brackets or final dot."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class HostAllowList:
    """The host names a server answers to (see the module doc)."""

    names: frozenset[str]
    suffixes: tuple[str, ...] = ()  # from ``*.example.com`` entries: ".example.com"
    any_host: bool = False  # ``*`` was given
    any_ip: bool = False  # bound to every address: each IP literal may be one of the server's

    @classmethod
    def of(cls, configured: Iterable[str], bound: str | None = None) -> HostAllowList:
        """Localhost names, ``bound`` (the listening address) and the ``configured`` names."""
        names = set(_LOCAL_NAMES)
        suffixes: list[str] = []
        entries = list(configured)
        for entry in entries:
            if entry.startswith("*."):
                suffixes.append(entry[1:])
            elif entry != "*":
                names.add(_bare_host(entry))
        every = bound is not None and _bare_host(bound) in _EVERY_ADDRESS
        if bound is not None and not every:
            names.add(_bare_host(bound))
        # DNS rebinding needs a name: an IP literal in Host cannot be rebound.
        return cls(frozenset(names), tuple(suffixes), "*" in entries, every)

    def allows(self, host_header: str | None) -> bool:
        if self.any_host or host_header is None:  # HTTP/1.0 without Host: no browser sends it
            return True
        host = _bare_host(host_header)
        if host in self.names or host.endswith(".localhost"):  # *.localhost is loopback
            return True
        if any(host.endswith(suffix) for suffix in self.suffixes):
            return True
        return self.any_ip and _is_ip(host)


def _has_body(headers: RequestHeaders) -> bool:
    if headers.get("transfer-encoding"):
        return True
    length = headers.get("content-length")
    return length is not None and length.strip() not in ("", "0")


class BrowserGuard:
    """Refuses misdirected, cross-site and simple-request-shaped calls; see the module doc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx: ApiContext = scope["app"].state.ctx
        refusal = self._refusal(scope, ctx)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, detail, slug = refusal
        response = problem_response(status, detail, slug=slug, instance=scope.get("path", ""))
        await response(scope, receive, send)

    def _refusal(self, scope: Scope, ctx: ApiContext) -> tuple[int, str, str] | None:
        headers = RequestHeaders(scope)
        hosts = ctx.hosts
        if hosts is not None and not hosts.allows(headers.get("host")):
            return (
                421,
                f"this server does not answer to the host {headers.get('host') or ''!r};"
                f" add its name to {_HOSTS_SETTING} if it is one of the server's names",
                "misdirected-request",
            )
        path: str = scope.get("path", "")
        if (
            scope.get("method") not in _MUTATING
            or not is_api_path(path)  # the dashboard's own pages change nothing
            or path.startswith(HOOKS_PREFIX)
        ):
            return None
        if self._cross_site(headers, ctx):
            return (
                403,
                "a request that changes something must come from the API's own origin, not"
                f" from a page of another site (a proxy's public name goes in {_HOSTS_SETTING})",
                "cross-site",
            )
        content_type = headers.get("content-type")
        if content_type is None:
            if _has_body(headers):
                return (415, f"a request body needs a Content-Type: send {BODY_TYPES}", "")
            return None
        media = media_type_of(content_type)
        if media == "application/json" or media.endswith("+json") or media in _YAML:
            return None
        return (415, f"unsupported content type {media!r}: send {BODY_TYPES}", "")

    @staticmethod
    def _cross_site(headers: RequestHeaders, ctx: ApiContext) -> bool:
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:  # the browser's own word, whatever a proxy did to Host
            return fetch_site.lower() not in _SAME_ORIGIN_FETCH
        origin = headers.get("origin")
        if origin is None:  # not a browser, or a same-origin GET-like navigation
            return False
        parts = urlsplit(origin)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return True  # "null": a sandboxed frame, a data: or file: page
        if parts.netloc.lower() == (headers.get("host") or "").lower():
            return False
        configured = HostAllowList.of(ctx.settings.allowed_hosts)
        return not (
            configured.any_host
            or (parts.hostname or "") in configured.names - set(_LOCAL_NAMES)
            or any((parts.hostname or "").endswith(s) for s in configured.suffixes)
        )
