"""Circuit breakers per handler and target host, shared by every worker through Redis.

A circuit is ``closed`` (calls go through) until ``threshold`` calls in a row fail; then it is
``open`` and calls fail fast with ``CircuitOpen`` for ``open_seconds``: the executor parks
the node until the circuit lets calls through again (``execution/executor.py``, waiting is not
an attempt); a compensation fails with the transient category ``circuit_open``. After that it is
``half_open``: exactly one call, the probe, goes through. The probe's success closes the
circuit (failures reset); its failure opens it again for another ``open_seconds``. A probe
that never reports (its worker died) is presumed lost after ``probe_timeout`` (default
``open_seconds``) and the next call becomes the probe, so a crash cannot wedge a circuit.

Results that arrive while the circuit is open come from calls let through before it opened;
they say nothing new and are ignored. While half-open, whichever result arrives first decides.

The policy is the pure pair ``decide`` / ``record`` (no I/O, no clock: ``now`` is given). In
Redis the same policy runs as two Lua scripts (``_BEFORE_LUA``, ``_AFTER_LUA``), so the
read-decide-write is atomic across workers and two of them can never both send the probe. The
scripts read the clock of the Redis server (``TIME``), one clock for every worker whatever
their own clocks say; a ``clock`` given to ``CircuitBreakers`` replaces it (tests).

A node refused by its circuit waits for it within its timeout: ``waiting_since`` keeps, per
attempt, when it was first refused (``{prefix}:circuitwait:{idempotency key}``, with the
circuits' TTL), so the wait is bounded whichever worker handles each wake.

Each circuit is the hash ``{prefix}:circuit:{handler}:{host}`` (host ``-`` for calls with no
target host: one circuit for the whole handler) with the fields ``state``, ``failures``,
``opened_at``, ``probe_at`` (set while a probe is in flight), ``handler`` and ``host``. Every
write renews a TTL (a day by default), so circuits nobody uses any more disappear.

Metrics: the gauge ``orchestrion_circuit_state{handler,host}`` (0 closed, 1 half-open,
2 open) is this process's view, set by ``before``, ``after`` and ``states``. It lives in the
default ``prometheus_client.REGISTRY`` (a worker process exposes that one), not in the
per-app registry of ``orchestrion.observability.metrics``, which belongs to one API app.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import Gauge

from orchestrion.errors import TransientNodeError

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "BREAKERS_KEY",
    "CIRCUIT_STATE",
    "NO_HOST",
    "Circuit",
    "CircuitBreakers",
    "CircuitOpen",
    "CircuitState",
    "decide",
    "record",
    "retry_in",
    "target_host",
]

BREAKERS_KEY = "circuit_breakers"
"""The key of ``Resources.extra`` under which the executor finds a ``CircuitBreakers``."""

NO_HOST = "-"
"""The host of a circuit for calls without a target host (one circuit per handler)."""

DEFAULT_TTL = 86400.0


class CircuitState(enum.StrEnum):
    """The three states of a circuit."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values: ordered by how bad it is, so max() over hosts means something.
_GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}

CIRCUIT_STATE = Gauge(
    "orchestrion_circuit_state",
    "Circuit breaker state as this process last saw it (0 closed, 1 half-open, 2 open)",
    ["handler", "host"],
)


@dataclass(frozen=True, slots=True)
class Circuit:
    """The state of one circuit; ``probe_started_at`` is set while a probe is in flight."""

    state: CircuitState = CircuitState.CLOSED
    failures: int = 0  # consecutive failures (not reset by opening: shown in states())
    opened_at: float | None = None
    probe_in_flight: bool = False
    probe_started_at: float | None = None


def decide(
    circuit: Circuit, now: float, open_seconds: float, *, probe_timeout: float | None = None
) -> tuple[bool, Circuit]:
    """May a call go through now? Returns the answer and the circuit after the decision."""
    if circuit.state is CircuitState.CLOSED:
        return True, circuit
    probe = replace(
        circuit, state=CircuitState.HALF_OPEN, probe_in_flight=True, probe_started_at=now
    )
    if circuit.state is CircuitState.OPEN:
        if now - (circuit.opened_at or 0.0) >= open_seconds:
            return True, probe
        return False, circuit
    # half-open: one probe at a time, unless the one in flight is presumed lost
    limit = open_seconds if probe_timeout is None else probe_timeout
    if not circuit.probe_in_flight or now - (circuit.probe_started_at or 0.0) >= limit:
        return True, probe
    return False, circuit


def record(circuit: Circuit, ok: bool, now: float, threshold: int) -> Circuit:
    """The circuit after a call it let through ended (``ok``: the downstream did its part)."""
    if circuit.state is CircuitState.CLOSED:
        if ok:
            return circuit if circuit.failures == 0 else Circuit()
        failures = circuit.failures + 1
        if failures >= threshold:
            return Circuit(CircuitState.OPEN, failures, opened_at=now)
        return replace(circuit, failures=failures)
    if circuit.state is CircuitState.HALF_OPEN:
        if ok:
            return Circuit()
        return Circuit(CircuitState.OPEN, circuit.failures + 1, opened_at=now)
    return circuit  # open: a late result of a call let through before the circuit opened


def retry_in(
    circuit: Circuit, now: float, open_seconds: float, *, probe_timeout: float | None = None
) -> float:
    """Seconds until ``decide`` lets the next call through (0 when it would now)."""
    if circuit.state is CircuitState.OPEN:
        return max(0.0, (circuit.opened_at or 0.0) + open_seconds - now)
    if circuit.state is CircuitState.HALF_OPEN and circuit.probe_in_flight:
        limit = open_seconds if probe_timeout is None else probe_timeout
        return max(0.0, (circuit.probe_started_at or 0.0) + limit - now)
    return 0.0


class CircuitOpen(TransientNodeError):
    """A call refused because its circuit is open (or half-open with a probe in flight)."""

    category = "circuit_open"

    def __init__(self, handler: str, host: str, state: CircuitState, retry_in: float) -> None:
        self.handler = handler
        self.host = host
        self.state = state
        self.retry_in = retry_in
        what = "open" if state is CircuitState.OPEN else "half-open with a probe in flight"
        target = "every host" if host == NO_HOST else f"host '{host}'"
        super().__init__(
            f"circuit breaker {what} for handler '{handler}', {target}: failing fast; "
            f"the next probe is allowed in {retry_in:.2f} s",
            details={"handler": handler, "host": host, "state": state.value, "retry_in": retry_in},
        )


# Which config field holds the URL a handler calls. Other handlers get one handler-wide circuit.
_HOST_FIELDS = {"http": "url", "llm": "base_url"}


def target_host(handler: str, config: Mapping[str, Any]) -> str | None:
    """The host (``host`` or ``host:port``) a call of ``handler`` with ``config`` goes to.

    ``config`` is the rendered config (the validated model's fields, so defaults count: the
    llm handler's default ``base_url``). User info in the URL is dropped: it never reaches a
    Redis key or a metric label. None when the config names no URL (the call is then not
    guarded: nothing downstream to protect) or it is unreadable.
    """
    field = _HOST_FIELDS.get(handler)
    # Any other handler (a plug-in) is guarded when its config names a URL the usual way.
    url = config.get(field) if field is not None else config.get("url", config.get("base_url"))
    if not isinstance(url, str):
        return None
    try:
        parts = urlsplit(url.strip())
        host = parts.hostname
        port = parts.port
    except ValueError:  # a port that is not a number, a bad IPv6 literal
        return None
    if not host:
        return None
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return host if port is None else f"{host}:{port}"


# Both scripts: KEYS[1] the circuit hash; ARGV: now ('' = server time), open_seconds,
# probe_timeout, ttl (whole seconds), handler, host, then (after only) ok (1/0), threshold.
# They mirror decide() and record() above; tests run both against the same transition table.
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
        CIRCUIT_STATE.labels(handler, host).set(_GAUGE_VALUE[circuit_state])
        if not int(allowed):
            raise CircuitOpen(handler, host, circuit_state, _number(wait) or 0.0)

    async def after(self, handler: str, target: str | None, ok: bool) -> None:
        """Report how a call that ``before`` let through ended."""
        host = target or NO_HOST
        state, _failures, _opened = await self._after(
            keys=[self.key(handler, host)],
            args=[*self._args(handler, host), 1 if ok else 0, self.threshold],
        )
        CIRCUIT_STATE.labels(handler, host).set(_GAUGE_VALUE[CircuitState(_text(state))])

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
            CIRCUIT_STATE.labels(handler, host).set(_GAUGE_VALUE[state])
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
