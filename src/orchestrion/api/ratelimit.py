"""Per-client token buckets: ``rate`` tokens a second, up to ``burst``; 429 when empty.

A client is its API key (hashed, never kept in clear), else its ``X-Client-ID`` header, else
its IP address. Buckets of clients not seen for a while are forgotten, oldest first, so the
table stays bounded whatever the number of clients.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable

from fastapi import Request

from orchestrion.api.problems import ApiProblem

__all__ = ["RateLimiter", "client_key", "rate_limit"]

_MAX_CLIENTS = 10_000


class RateLimiter:
    """Token buckets by client key. ``rate`` or ``burst`` of 0 disables limiting."""

    def __init__(
        self,
        rate: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = _MAX_CLIENTS,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_clients = max_clients
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0

    def take(self, client: str) -> float:
        """Take one token; 0.0 when allowed, else the seconds until a token is available."""
        if not self.enabled:
            return 0.0
        now = self._clock()
        tokens, at = self._buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)  # most recently seen last
        while len(self._buckets) > self._max_clients:
            self._buckets.popitem(last=False)
        return wait


def client_key(request: Request) -> str:
    """Who is asking: API key, else X-Client-ID, else the peer address."""
    auth = request.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return "key:" + hashlib.sha256(token.strip().encode()).hexdigest()[:16]
    client_id = request.headers.get("x-client-id")
    if client_id:
        return "client:" + client_id[:200]
    host = request.client.host if request.client else "unknown"
    return "ip:" + host


async def rate_limit(request: Request) -> None:
    """Dependency: answer 429 with ``Retry-After`` when the client's bucket is empty."""
    limiter: RateLimiter = request.app.state.ctx.limiter
    wait = limiter.take(client_key(request))
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiProblem(
            429,
            f"rate limit of {limiter.rate:g} requests/s (burst {limiter.burst}) exceeded; "
            f"retry in {seconds} s",
            headers={"Retry-After": str(seconds)},
        )
