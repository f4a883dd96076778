"""Circuit breakers whose state every worker shares through Redis (``SharedCircuits``).

The policy is ``decide`` / ``record`` in ``execution/circuit.py``; here it runs as two Lua
scripts (``_BEFORE_LUA``, ``_AFTER_LUA``), so the read-decide-write is atomic across workers
and two of them can never both send the probe. The scripts read the clock of the Redis server
(``TIME``), one clock for every worker whatever their own clocks say; a ``clock`` given to
``CircuitBreakers`` replaces it (tests).

Each circuit is the hash ``{prefix}:circuit:{handler}:{host}`` (host ``-`` for calls with no
target host: one circuit for the whole handler) with the fields ``state``, ``failures``,
``opened_at``, ``probe_at`` (set while a probe is in flight), ``handler`` and ``host``. Every
write renews a TTL (a day by default), so circuits nobody uses any more disappear. The first
refusal of a waiting attempt is kept under ``{prefix}:circuitwait:{idempotency key}``, with
the circuits' TTL.

The gauge ``orchestrion_circuit_state`` (``execution/circuit.py``) is set by ``before``,
``after`` and ``states``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrion.execution.circuit import (
    CIRCUIT_STATE,
    GAUGE_VALUE,
    NO_HOST,
    CircuitOpen,
    CircuitState,
)

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["DEFAULT_TTL", "CircuitBreakers"]

DEFAULT_TTL = 86400.0

# Both scripts: KEYS[1] the circuit hash; ARGV: now ('' = server time), open_seconds,
# probe_timeout, ttl (whole seconds), handler, host, then (after only) ok (1/0), threshold.
# They mirror decide() and record() (execution/circuit.py); tests run both against the same
# transition table.
_PRELUDE = """
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local now = tonumber(ARGV[1])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local open_seconds = tonumber(ARGV[2])
local probe_timeout = tonumber(ARGV[3])
local ttl = tonumber(ARGV[4])
local f = redis.call('HMGET', key, 'state', 'failures', 'opened_at', 'probe_at')
local state = f[1] or 'closed'
local failures = tonumber(f[2]) or 0
local opened_at = tonumber(f[3])
local probe_at = tonumber(f[4])
local function fmt(x)
  if x then return string.format('%.6f', x) end
  return ''
end
"""

_BEFORE_LUA = (
    _PRELUDE
    + """
local allowed = 1
local wait = 0
if state == 'open' then
  if now - (opened_at or 0) >= open_seconds then
    state = 'half_open'
  else
    allowed = 0
    wait = (opened_at or 0) + open_seconds - now
  end
elseif state == 'half_open' then
  if probe_at and now - probe_at < probe_timeout then
    allowed = 0
    wait = probe_at + probe_timeout - now
  end
end
if allowed == 1 and state == 'half_open' then
  redis.call('HSET', key, 'state', state, 'probe_at', fmt(now), 'failures', failures,
             'handler', ARGV[5], 'host', ARGV[6])
  redis.call('EXPIRE', key, ttl)
end
return {allowed, state, failures, fmt(opened_at), fmt(wait)}
"""
)

_AFTER_LUA = (
    _PRELUDE
    + """
local ok = ARGV[7] == '1'
local threshold = tonumber(ARGV[8])
if state == 'open' then
  return {state, failures, fmt(opened_at)}
end
if state == 'closed' then
  if ok then
    failures = 0
  else
    failures = failures + 1
    if failures >= threshold then
      state = 'open'
      opened_at = now
    end
  end
else
  if ok then
    state = 'closed'
    failures = 0
    opened_at = nil
  else
    state = 'open'
    failures = failures + 1
    opened_at = now
  end
end
redis.call('HSET', key, 'state', state, 'failures', failures, 'handler', ARGV[5],
           'host', ARGV[6])
if opened_at then
  redis.call('HSET', key, 'opened_at', fmt(opened_at))
else
  redis.call('HDEL', key, 'opened_at')
end
redis.call('HDEL', key, 'probe_at')
redis.call('EXPIRE', key, ttl)
return {state, failures, fmt(opened_at)}
"""
)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _number(value: Any) -> float | None:
    text = _text(value) if value is not None else ""
    return float(text) if text else None


class CircuitBreakers:
    """The circuits of every handler and host, in Redis under ``prefix``; see the module doc.

    ``clock`` replaces the Redis server's clock (tests); by default the scripts use ``TIME``.
    """

    def __init__(
        self,
        redis: Redis,
        prefix: str,
        threshold: int = 5,
        open_seconds: float = 30.0,
        *,
        probe_timeout: float | None = None,
        ttl_seconds: float = DEFAULT_TTL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        if open_seconds <= 0:
            raise ValueError(f"open_seconds must be positive, got {open_seconds}")
        self.redis = redis
        self.prefix = prefix
        self.threshold = threshold
        self.open_seconds = open_seconds
        self.probe_timeout = open_seconds if probe_timeout is None else probe_timeout
        # whole seconds for EXPIRE, and never shorter than a circuit stays open
        self.ttl = max(1, math.ceil(max(ttl_seconds, self.open_seconds, self.probe_timeout)))
        self.clock = clock
        self._before = redis.register_script(_BEFORE_LUA)
        self._after = redis.register_script(_AFTER_LUA)

    def key(self, handler: str, host: str) -> str:
        """The Redis hash of one circuit."""
        return f"{self.prefix}:circuit:{handler}:{host}"

    def _args(self, handler: str, host: str) -> list[str | int | float]:
        now = "" if self.clock is None else repr(self.clock())
        return [now, self.open_seconds, self.probe_timeout, self.ttl, handler, host]

    async def before(self, handler: str, target: str | None) -> None:
        """Claim a call through the circuit of ``handler`` and ``target``; ``CircuitOpen`` if not.

        When the circuit is half-open this call becomes the probe, and must be followed by
        ``after`` (a probe that never reports holds the circuit for ``probe_timeout``).
        """
        host = target or NO_HOST
        allowed, state, _failures, _opened, wait = await self._before(
            keys=[self.key(handler, host)], args=self._args(handler, host)
        )
        circuit_state = CircuitState(_text(state))
        CIRCUIT_STATE.labels(handler, host).set(GAUGE_VALUE[circuit_state])
        if not int(allowed):
            raise CircuitOpen(handler, host, circuit_state, _number(wait) or 0.0)

    async def after(self, handler: str, target: str | None, ok: bool) -> None:
        """Report how a call that ``before`` let through ended."""
        host = target or NO_HOST
        state, _failures, _opened = await self._after(
            keys=[self.key(handler, host)],
            args=[*self._args(handler, host), 1 if ok else 0, self.threshold],
        )
        CIRCUIT_STATE.labels(handler, host).set(GAUGE_VALUE[CircuitState(_text(state))])

    def wait_key(self, attempt_key: str) -> str:
        """The key holding when an attempt was first refused (``waiting_since``)."""
        return f"{self.prefix}:circuitwait:{attempt_key}"

    async def waiting_since(self, attempt_key: str, now: float) -> float:
        """When the attempt ``attempt_key`` (its idempotency key) was first refused by a
        circuit: ``now`` unless an earlier refusal was recorded (by any worker)."""
        key = self.wait_key(attempt_key)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.set(key, repr(now), nx=True, ex=self.ttl)
            pipe.get(key)
            _set, first = await pipe.execute()
        return _number(first) or now

    async def done_waiting(self, attempt_key: str) -> None:
        """Forget the attempt's first refusal (a call of it went through)."""
        await self.redis.delete(self.wait_key(attempt_key))

    async def states(self) -> list[dict[str, Any]]:
        """Every circuit in Redis (handler, host, state, failures, opened_at), sorted.

        Also sets this process's gauge for each, so a process that calls it (``/health``)
        exposes the shared view in its metrics.
        """
        marker = f"{self.prefix}:circuit:"
        keys = [key async for key in self.redis.scan_iter(match=f"{marker}*", count=1000)]
        if not keys:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hgetall(key)
            hashes = await pipe.execute()
        circuits: list[dict[str, Any]] = []
        for key, raw in zip(keys, hashes, strict=True):
            if not raw:  # expired between SCAN and HGETALL
                continue
            fields = {_text(k): _text(v) for k, v in raw.items()}
            handler = fields.get("handler")
            host = fields.get("host")
            if handler is None or host is None:  # written by an older version: use the key
                handler, _, host = _text(key)[len(marker) :].partition(":")
            state = CircuitState(fields.get("state", "closed"))
            CIRCUIT_STATE.labels(handler, host).set(GAUGE_VALUE[state])
            circuits.append(
                {
                    "handler": handler,
                    "host": host,
                    "state": state.value,
                    "failures": int(fields.get("failures") or 0),
                    "opened_at": _number(fields.get("opened_at")),
                }
            )
        circuits.sort(key=lambda c: (c["handler"], c["host"]))
        return circuits
