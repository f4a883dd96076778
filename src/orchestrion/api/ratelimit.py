"""Rate limits by caller: per API key, or per client address for callers without a valid key.

The algorithm is GCRA, a token bucket kept as one number (the "theoretical arrival time"):
``burst`` requests at once, then ``rate`` a second. ``gcra`` is the pure step, used by both
stores:

- ``LocalBuckets``: in this process (embedded mode, and the fallback below). The table is
  bounded: the callers not seen for longest are forgotten first. Keys and addresses live in
  separate tables, so a flood from many addresses cannot push a key's bucket out.
- Redis (scale-out, ``ORCHESTRION_REDIS_URL``): one Lua script does the same step atomically
  on ``<prefix>:ratelimit:<identity>`` with Redis's own clock, and the key expires once the
  bucket would be full again, so every API replica shares one bucket per caller.

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
from typing import TYPE_CHECKING, Any

from orchestrion.api.auth import Caller
from orchestrion.api.client_address import address_bucket

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.settings import Settings

__all__ = ["Decision", "Limit", "LocalBuckets", "RateLimiter", "gcra"]

logger = logging.getLogger(__name__)

_MAX_CLIENTS = 10_000
_REDIS_TIMEOUT = 1.0  # seconds a limiter call may wait for Redis before falling back
_REDIS_RETRY = 5.0  # seconds the local buckets are used after a Redis failure


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


# KEYS[1]: the bucket; ARGV: emission interval and tolerance in microseconds. Times are
# integers in microseconds from Redis's clock (TIME), so replicas' clocks do not matter.
_GCRA_LUA = """
local emission = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + emission
local allow_at = new_tat - tolerance
if now < allow_at then
  return {0, 0, allow_at - now, tat - now}
end
local ttl = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', ttl)
return {1, math.floor((tolerance - (new_tat - now)) / emission), 0, new_tat - now}
"""


class RedisBuckets:
    """GCRA buckets in Redis, shared by every API replica; see the module docstring."""

    def __init__(self, prefix: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.prefix = prefix
        self._clock = clock
        self._script: Any = None
        self._script_of: Redis | None = None
        self._down_until = 0.0

    @property
    def degraded(self) -> bool:
        return self._clock() < self._down_until

    async def take(
        self, redis: Redis, identity: str, limit: Limit, fallback: LocalBuckets
    ) -> Decision:
        """One request on ``identity``'s shared bucket; on ``fallback`` while Redis fails."""
        if self.degraded:
            return fallback.take(identity, limit)
        if self._script_of is not redis:
            self._script, self._script_of = redis.register_script(_GCRA_LUA), redis
        emission = round(1_000_000 / limit.rate)
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                allowed, remaining, wait_us, reset_us = await self._script(
                    keys=[f"{self.prefix}:ratelimit:{identity}"],
                    args=[emission, emission * limit.burst],
                )
        except Exception as exc:  # any Redis failure: the local buckets, for a while
            if not self.degraded:
                logger.warning(
                    "rate limits fall back to this replica's own buckets for %.0f s:"
                    " Redis failed (%s)",
                    _REDIS_RETRY,
                    type(exc).__name__,
                )
            self._down_until = self._clock() + _REDIS_RETRY
            return fallback.take(identity, limit)
        return Decision(
            bool(allowed), limit.burst, int(remaining), wait_us / 1e6, max(0, reset_us) / 1e6
        )


class RateLimiter:
    """The limit that applies to a caller, and the buckets it is counted in.

    Callers with a valid API key: ``per_key``, one bucket per key. Callers without one:
    ``unauthenticated``, one bucket per address. When the API is open (no keys configured)
    every caller is anonymous and gets ``per_key`` per address.
    """

    def __init__(
        self,
        per_key: Limit,
        unauthenticated: Limit,
        *,
        redis_prefix: str = "orchestrion",
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = _MAX_CLIENTS,
    ) -> None:
        self.per_key = per_key
        self.unauthenticated = unauthenticated
        self._keys = LocalBuckets(clock=clock, max_clients=max_clients)
        self._addresses = LocalBuckets(clock=clock, max_clients=max_clients)
        self.shared = RedisBuckets(redis_prefix, clock=clock)

    @classmethod
    def for_settings(cls, settings: Settings) -> RateLimiter:
        return cls(
            Limit(settings.rate_limit_per_second, settings.rate_limit_burst),
            Limit(
                settings.rate_limit_unauthenticated_per_second,
                settings.rate_limit_unauthenticated_burst,
            ),
            redis_prefix=settings.redis_prefix,
        )

    def limit_for(self, caller: Caller) -> tuple[str, Limit]:
        """The identity whose bucket counts ``caller``'s requests, and its limit."""
        if caller.bucket is not None:
            return caller.bucket, self.per_key
        where = address_bucket(caller.address)
        if caller.open_api:
            return "anon:" + where, self.per_key
        return "addr:" + where, self.unauthenticated

    async def take(self, caller: Caller, redis: Redis | None = None) -> Decision | None:
        """Count one request of ``caller``; None when its limit is off. With ``redis`` the
        bucket is shared by every replica using that Redis."""
        identity, limit = self.limit_for(caller)
        if not limit.enabled:
            return None
        local = self._keys if caller.bucket is not None else self._addresses
        if redis is not None:
            return await self.shared.take(redis, identity, limit, local)
        return local.take(identity, limit)
