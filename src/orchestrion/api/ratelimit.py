"""Rate limits by caller: per API key, or per client address for callers without a valid key.

The algorithm is GCRA, a token bucket kept as one number (the "theoretical arrival time"):
``burst`` requests at once, then ``rate`` a second. ``gcra`` is the pure step of this process's
buckets:

- ``LocalBuckets``: in this process (embedded mode, and the fallback below). The table is
  bounded: the callers not seen for longest are forgotten first. Keys and addresses live in
  separate tables, so a flood from many addresses cannot push a key's bucket out.
- ``SharedBuckets`` (scale-out, ``ORCHESTRION_REDIS_URL``): the same step done atomically in
  Redis (``cluster/rate_buckets.py``), so every API replica shares one bucket per caller.

When Redis fails (down, slow), the limiter neither lets everything through nor refuses
everything: each replica falls back to its local buckets (the same limits, per replica) and
tries Redis again a few seconds later. Failing open would lift the limit exactly when the
cluster is weakest; failing closed would turn a Redis outage into a full API outage, reads
included.

Identities never hold a secret: an API key is known by a digest prefix of the configured key
(see ``auth.Caller.bucket``), an address by its IPv4 address or IPv6 /64.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from orchestrion.api.auth import Caller
from orchestrion.api.client_address import address_bucket
from orchestrion.errors import DispatchError

if TYPE_CHECKING:
    from orchestrion.settings import Settings

__all__ = ["Decision", "Limit", "LocalBuckets", "RateLimiter", "SharedBuckets", "gcra"]

logger = logging.getLogger(__name__)

_MAX_CLIENTS = 10_000
_SHARED_TIMEOUT = 1.0  # seconds a limiter call may wait for Redis before falling back
_SHARED_RETRY = 5.0  # seconds the local buckets are used after a Redis failure


@dataclass(frozen=True, slots=True)
class Limit:
    """``burst`` requests at once, refilled at ``rate`` a second; 0 in either: no limit."""

    rate: float
    burst: int

    @property
    def enabled(self) -> bool:
        return self.rate > 0 and self.burst > 0


@dataclass(frozen=True, slots=True)
class Decision:
    """The limiter's answer for one request, and the rate-limit headers that say it."""

    allowed: bool
    limit: int
    remaining: int
    retry_after: float  # seconds until a request would be allowed (0 when allowed)
    reset: float  # seconds until the bucket is full again

    def headers(self) -> dict[str, str]:
        headers = {
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": str(self.remaining),
            "RateLimit-Reset": str(math.ceil(self.reset)),
        }
        if not self.allowed:
            # delta-seconds is an integer: round up, so a client that waits is let in.
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


def gcra(tat: float | None, now: float, limit: Limit) -> tuple[float | None, Decision]:
    """One request against a bucket whose theoretical arrival time is ``tat`` (None: full).

    Returns the new ``tat`` (None when refused: the bucket is unchanged) and the decision.
    """
    emission = 1.0 / limit.rate
    tolerance = limit.burst * emission
    # Differences from now, not absolute times: with a slow rate, (now + emission) - tolerance
    # can round to just above now and refuse the first request of a full bucket.
    ahead = 0.0 if tat is None else max(tat - now, 0.0)
    wait = ahead + emission - tolerance
    if wait > 1e-9 * emission:
        return None, Decision(False, limit.burst, 0, wait, ahead)
    remaining = int((tolerance - ahead - emission) / emission + 1e-9)
    return now + ahead + emission, Decision(True, limit.burst, remaining, 0.0, ahead + emission)


class LocalBuckets:
    """GCRA buckets in this process, at most ``max_clients`` (least recently seen dropped)."""

    def __init__(
        self, *, clock: Callable[[], float] = time.monotonic, max_clients: int = _MAX_CLIENTS
    ) -> None:
        self._clock = clock
        self._max_clients = max_clients
        self._tats: OrderedDict[str, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._tats)

    def take(self, identity: str, limit: Limit) -> Decision:
        now = self._clock()
        tat = self._tats.pop(identity, None)
        new_tat, decision = gcra(tat, now, limit)
        kept = new_tat if new_tat is not None else tat
        if kept is not None and kept > now:
            self._tats[identity] = kept  # most recently seen last; a full bucket is dropped
        while len(self._tats) > self._max_clients:
            self._tats.popitem(last=False)
        return decision


class SharedBuckets(Protocol):
    """Buckets every API replica shares (scale-out: ``cluster/rate_buckets.py`` in Redis)."""

    async def take(self, identity: str, rate: float, burst: int) -> tuple[bool, int, float, float]:
        """Count one request on ``identity``'s bucket: (allowed, remaining, seconds until a
        request would be allowed, seconds until the bucket is full again); a
        ``DispatchError`` when the shared store does not answer."""
        ...


class SharedWithFallback:
    """Counts on the shared buckets, and on this replica's own while they fail (see the
    module docstring)."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._down_until = 0.0

    @property
    def degraded(self) -> bool:
        return self._clock() < self._down_until

    async def take(
        self, shared: SharedBuckets, identity: str, limit: Limit, fallback: LocalBuckets
    ) -> Decision:
        """One request on ``identity``'s shared bucket; on ``fallback`` while it fails."""
        if self.degraded:
            return fallback.take(identity, limit)
        try:
            async with asyncio.timeout(_SHARED_TIMEOUT):
                allowed, remaining, wait, reset = await shared.take(
                    identity, limit.rate, limit.burst
                )
        except (DispatchError, TimeoutError) as exc:  # the local buckets, for a while
            if not self.degraded:
                logger.warning(
                    "rate limits fall back to this replica's own buckets for %.0f s:"
                    " Redis failed (%s)",
                    _SHARED_RETRY,
                    exc.kind if isinstance(exc, DispatchError) else type(exc).__name__,
                )
            self._down_until = self._clock() + _SHARED_RETRY
            return fallback.take(identity, limit)
        return Decision(allowed, limit.burst, remaining, wait, reset)


class RateLimiter:
    """The limit that applies to a caller, and the buckets it is counted in.

    Callers with a valid API key: ``per_key``, one bucket per key. Callers without one:
    ``unauthenticated``, one bucket per address (``per_key`` per address for the pages of the
    dashboard and the docs, see ``limit_for``). When the API is open (no keys configured)
    every caller is anonymous and gets ``per_key`` per address.
    """

    def __init__(
        self,
        per_key: Limit,
        unauthenticated: Limit,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = _MAX_CLIENTS,
    ) -> None:
        self.per_key = per_key
        self.unauthenticated = unauthenticated
        self._keys = LocalBuckets(clock=clock, max_clients=max_clients)
        self._addresses = LocalBuckets(clock=clock, max_clients=max_clients)
        self.shared = SharedWithFallback(clock=clock)

    @classmethod
    def for_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            Limit(settings.rate_limit_per_second, settings.rate_limit_burst),
            Limit(
                settings.rate_limit_unauthenticated_per_second,
                settings.rate_limit_unauthenticated_burst,
            ),
        )

    def limit_for(self, caller: Caller, *, page: bool = False) -> tuple[str, Limit]:
        """The identity whose bucket counts ``caller``'s requests, and its limit.

        ``page``: the request is for a page or static file of the dashboard or the docs
        (``surfaces.is_page_path``). A browser without a session loads several of them per
        view (the sign-in page, its script and style...), and they test no key: such requests
        count in a bucket of their own per address, with a key's limit, so that signing out
        and in again never meets the tight limit meant for key guessing. A page request that
        carries a bearer token matching no key stays in that tight bucket: its rate-limit
        headers would otherwise tell, at a key's rate, whether a guessed token is a key.
        """
        if caller.bucket is not None:
            return caller.bucket, self.per_key
        where = address_bucket(caller.address)
        if caller.open_api:
            return "anon:" + where, self.per_key
        if page and (not caller.presented or caller.session_refused):
            return "page:" + where, self.per_key
        return "addr:" + where, self.unauthenticated

    async def take(
        self, caller: Caller, shared: SharedBuckets | None = None, *, page: bool = False
    ) -> Decision | None:
        """Count one request of ``caller`` (``page``: see ``limit_for``); None when its limit
        is off. With ``shared`` the bucket is shared by every replica using those buckets."""
        identity, limit = self.limit_for(caller, page=page)
        if not limit.enabled:
            return None
        local = self._keys if caller.bucket is not None else self._addresses
        if shared is not None:
            return await self.shared.take(shared, identity, limit, local)
        return local.take(identity, limit)
