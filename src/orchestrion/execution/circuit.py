"""Circuit breakers per handler and target host: the policy, and the state it needs shared.

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

The policy is the pure pair ``decide`` / ``record`` (no I/O, no clock: ``now`` is given).
Every worker must see the same circuits, so their state lives in a store shared by all, behind
the ``SharedCircuits`` protocol below: the Redis one (``cluster/circuits.py``) runs the same
policy as two Lua scripts, so that the read-decide-write is atomic across workers and two of
them can never both send the probe.

A node refused by its circuit waits for it within its timeout: ``waiting_since`` keeps, per
attempt, when it was first refused, so the wait is bounded whichever worker handles each wake.

Metrics: the gauge ``orchestrion_circuit_state{handler,host}`` (0 closed, 1 half-open,
2 open) is this process's view, set by the shared store as it answers. It lives in the
default ``prometheus_client.REGISTRY`` (a worker process exposes that one), not in the
per-app registry of ``orchestrion.observability.metrics``, which belongs to one API app.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

from prometheus_client import Gauge

from orchestrion.errors import ErrorCategory, TransientNodeError

__all__ = [
    "CIRCUIT_STATE",
    "GAUGE_VALUE",
    "NO_HOST",
    "Circuit",
    "CircuitOpen",
    "CircuitState",
    "SharedCircuits",
    "decide",
    "record",
    "retry_in",
    "target_host",
]

NO_HOST = "-"
"""The host of a circuit for calls without a target host (one circuit per handler)."""


class CircuitState(enum.StrEnum):
    """The three states of a circuit."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values: ordered by how bad it is, so max() over hosts means something.
GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}

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

    category = ErrorCategory.CIRCUIT_OPEN

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


class SharedCircuits(Protocol):
    """The circuits every worker shares: what the executor's circuit layer asks of them.

    Each call is one atomic read-decide-write of ``decide`` or ``record`` on the shared state.
    """

    async def before(self, handler: str, target: str | None) -> None:
        """Claim a call through the circuit of ``handler`` and ``target``; ``CircuitOpen`` if
        not. When the circuit is half-open the call becomes the probe and must be followed by
        ``after``."""

    async def after(self, handler: str, target: str | None, ok: bool) -> None:
        """Report how a call that ``before`` let through ended."""

    async def waiting_since(self, attempt_key: str, now: float) -> float:
        """When the attempt ``attempt_key`` was first refused: ``now`` unless earlier."""

    async def done_waiting(self, attempt_key: str) -> None:
        """Forget the attempt's first refusal (a call of it went through)."""
