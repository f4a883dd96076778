"""Rate-limit buckets in Redis, shared by every API replica (the limiter is ``api/ratelimit.py``).

One Lua script does a GCRA step atomically on ``<prefix>:ratelimit:<identity>`` with Redis's
own clock, so the replicas' clocks do not matter, and the key expires once the bucket would be
full again. Any failure (Redis down or slow, a reply of the wrong shape) is a
``DispatchError``: the limiter then counts on its replica's own buckets for a while.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from orchestrion.errors import DispatchError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["BucketAnswer", "RedisRateBuckets"]

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


class BucketAnswer(NamedTuple):
    """One request counted on a shared bucket (times in seconds)."""

    allowed: bool
    remaining: int
    retry_after: float  # until a request would be allowed (0 when allowed)
    reset: float  # until the bucket is full again


class RedisRateBuckets:
    """GCRA buckets under ``<prefix>:ratelimit:`` of one Redis; see the module docstring."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self.prefix = prefix
        self._script: Any = redis.register_script(_GCRA_LUA)

    async def take(self, identity: str, rate: float, burst: int) -> BucketAnswer:
        """One request on ``identity``'s bucket: ``burst`` at once, ``rate`` a second."""
        emission = round(1_000_000 / rate)
        try:
            allowed, remaining, wait_us, reset_us = await self._script(
                keys=[f"{self.prefix}:ratelimit:{identity}"], args=[emission, emission * burst]
            )
        except Exception as exc:  # whatever failed, the shared bucket did not answer
            raise DispatchError(
                f"the shared rate-limit bucket did not answer: {exc}", kind=type(exc).__name__
            ) from exc
        return BucketAnswer(bool(allowed), int(remaining), wait_us / 1e6, max(0, reset_us) / 1e6)
