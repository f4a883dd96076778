"""Connections pinned to the addresses the SSRF policy checked (DNS rebinding closed).

``UrlPolicy.check`` (``governance/ssrf.py``) looks a host name up and refuses forbidden
addresses, but a connection by name would resolve it again, and a DNS server may answer
differently the second time. The shared http client therefore connects through
``PinnedBackend``: it resolves the name itself, checks every address with the same policy and
connects to those addresses only. ``PinnedTransport`` is httpx's transport over a pool that
uses it. A module of its own so that httpx is imported only by processes that make requests.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Iterable

import anyio
import httpcore
import httpx

from orchestrion.governance.ssrf import UrlPolicy

__all__ = ["PinnedBackend", "PinnedTransport"]


class PinnedBackend(httpcore.AsyncNetworkBackend):
    """An httpcore network backend that connects only to addresses the URL policy checked.

    ``connect_tcp`` resolves the host itself (with the policy's resolver), checks every
    address with the classifier ``UrlPolicy.check`` uses (``UrlPolicy.check_address``: what
    the address reaches, embedded IPv4 forms and the unspecified address included; a
    ``PolicyViolation`` propagates through httpx
    unchanged, so the node fails as ``policy_violation``) and connects to the checked IP
    addresses in the resolver's order, the next one when one refuses or does not answer in
    its share of the connect timeout. The name is never handed to the socket layer, so it
    cannot resolve differently. TLS is unaffected: httpcore starts it with the URL's host as
    ``server_hostname``.

    ``policy`` is read at every connection, so an engine that changes its governance (the
    service makes it untrusted) is followed; ``None`` connects by name, unchecked.
    """

    def __init__(
        self,
        policy: Callable[[], UrlPolicy | None],
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        self._policy = policy
        # httpcore's own default on asyncio (the engine's loop); its auto backend is private.
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        policy = self._policy()
        if policy is None:
            return await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            # The lookup counts against the connect timeout, as it does when the socket
            # layer resolves the name itself.
            with anyio.fail_after(timeout):
                addresses = await policy.addresses(host, port)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"timed out resolving {host}") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or f"cannot resolve {host}") from exc
        failure: Exception = httpcore.ConnectError(f"{host} has no address")
        for index, address in enumerate(addresses):
            # Each address gets its share of what is left of the timeout, so one that never
            # answers (IPv6 without a route, say) leaves time for the next, as the happy
            # eyeballs of a connection by name would.
            share = None
            if deadline is not None:
                share = max(0.0, deadline - time.monotonic()) / (len(addresses) - index)
            try:
                return await self._inner.connect_tcp(
                    str(address), port, share, local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc  # the name's next address may answer
        raise failure

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        # No host to resolve: a socket path is the operator's configuration, not a URL's.
        return await self._inner.connect_unix_socket(path, timeout, socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a connection pool that connects through ``backend``."""

    def __init__(
        self,
        backend: httpcore.AsyncNetworkBackend,
        *,
        verify: bool | str | ssl.SSLContext,
        trust_env: bool,
        limits: httpx.Limits,
    ) -> None:
        ssl_context = httpx.create_ssl_context(verify=verify, trust_env=trust_env)
        super().__init__(verify=ssl_context, trust_env=trust_env, limits=limits)
        # httpx (0.27, 0.28) takes no network backend: its pool is replaced by one with the
        # same settings that has it. Refuse loudly rather than run unpinned if that changes.
        if not isinstance(getattr(self, "_pool", None), httpcore.AsyncConnectionPool):
            raise RuntimeError("this httpx version keeps no connection pool in _pool")
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=backend,
        )
