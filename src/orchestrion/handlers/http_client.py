"""The HTTP client the http and llm handlers share: pooled, proxy-aware, pinned to checked
addresses.

One client is built per process from its settings and shared by every attempt (``Resources
.http``); a handler given none builds its own for one call. Redirects are not followed by the
client but by the handler, hop by hop, so that the URL guard sees each one; a redirect whose
``Location`` httpx cannot parse is raised with the raw value kept (``UNREADABLE_LOCATION``),
for the guard to judge.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrion.governance.ssrf import UrlPolicy

if TYPE_CHECKING:
    import httpx

__all__ = ["UNREADABLE_LOCATION", "USER_AGENT", "build_http_client"]

USER_AGENT = "orchestrion/0.1"
UNREADABLE_LOCATION = "orchestrion_unreadable_location"
"""The attribute of a ``RemoteProtocolError`` that holds a redirect's unparseable Location."""


def build_http_client(
    *,
    timeout: float = 30.0,
    max_connections: int = 100,
    max_keepalive_connections: int | None = None,
    trust_env: bool = True,
    verify: bool | str | ssl.SSLContext = True,
    user_agent: str = USER_AGENT,
    url_policy: UrlPolicy | Callable[[], UrlPolicy | None] | None = None,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` fit to share between node attempts of one process.

    The runtime builds one from its settings (``timeout=settings.http_timeout,
    max_connections=settings.http_max_connections``) and puts it in ``Resources.http``.
    Proxy variables are read here, when the client is built, not per request.

    With ``url_policy`` (a policy, or a callable giving the one in force at each connection)
    direct connections go through ``PinnedBackend``: to addresses the policy checked at
    connect time. Requests sent through an HTTP proxy connect to the proxy, which resolves
    the target itself: the proxy, the operator's choice, is not checked against the policy.
    """
    import httpx  # here, not at the top: a run without http nodes never pays for it

    from orchestrion.governance.pinning import PinnedBackend, PinnedTransport
    from orchestrion.handlers.proxy_env import environment_proxies

    keepalive = max_keepalive_connections
    if keepalive is None:
        keepalive = min(max_connections, 20)
    limits = httpx.Limits(
        max_connections=max_connections,
        max_keepalive_connections=keepalive,
        keepalive_expiry=30.0,
    )
    transport: httpx.AsyncBaseTransport | None = None
    mounts: dict[str, httpx.AsyncBaseTransport | None] | None = None
    if url_policy is not None:
        if isinstance(url_policy, UrlPolicy):  # itself callable: a guard, not a source
            fixed = url_policy
            backend = PinnedBackend(lambda: fixed)
        else:
            backend = PinnedBackend(url_policy)
        transport = PinnedTransport(backend, verify=verify, trust_env=trust_env, limits=limits)
        if trust_env:
            # A transport of our own turns off httpx's proxy variables: mount them again, as
            # httpx would (a NO_PROXY pattern maps to None: the pinned transport).
            mounts = {
                pattern: None
                if proxy is None
                else httpx.AsyncHTTPTransport(
                    verify=verify, trust_env=trust_env, limits=limits, proxy=proxy
                )
                for pattern, proxy in environment_proxies().items()
            }
    return httpx.AsyncClient(
        event_hooks={"response": [_readable_location]},
        timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
        limits=limits,
        trust_env=trust_env,
        verify=verify,
        transport=transport,
        mounts=mounts,
        # Redirects are followed by the handler, hop by hop, so the URL guard sees each one.
        follow_redirects=False,
        headers={"User-Agent": user_agent},
    )


async def _readable_location(response: httpx.Response) -> None:
    """Response hook: a redirect whose Location httpx cannot parse fails as httpx would fail
    it (``RemoteProtocolError``), with the raw Location kept for the URL guard."""
    import httpx

    if response.has_redirect_location:
        location = response.headers["Location"]
        try:
            httpx.URL(location)
        except httpx.InvalidURL as exc:
            error = httpx.RemoteProtocolError(
                f"Invalid URL in location header: {exc}.", request=response.request
            )
            setattr(error, UNREADABLE_LOCATION, location)
            raise error from exc
