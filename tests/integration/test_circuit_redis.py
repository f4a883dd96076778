"""Circuit breakers on a real Redis: shared by workers, one probe, and behind the executor.

Uses the ``redis_server`` / ``redis_prefix`` fixtures of tests/conftest.py: skipped without a
Redis, failed in CI (``CI=true``); every test has its own key prefix, deleted afterwards.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from prometheus_client import REGISTRY

from loopback_listener import serving
from orchestrion.cluster.circuits import CircuitBreakers
from orchestrion.core.events import NodeFailed, NodeSucceeded, NodeWaiting
from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution.circuit import (
    Circuit,
    CircuitOpen,
    CircuitState,
    decide,
    record,
)
from orchestrion.execution.executor import NodeExecutor
from orchestrion.handlers.base import Controls, Resources
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.http import build_http_client
from orchestrion.handlers.registry import HandlerRegistry

pytest.importorskip("redis")

from redis.asyncio import Redis

OPEN_S = 0.2


@pytest.fixture
async def clients(redis_server: str) -> AsyncIterator[tuple[Redis, Redis]]:
    """Two connections: two workers."""
    a, b = Redis.from_url(redis_server), Redis.from_url(redis_server)
    try:
        yield a, b
    finally:
        await a.aclose()
        await b.aclose()


@pytest.fixture
def workers(
    clients: tuple[Redis, Redis], redis_prefix: str
) -> tuple[CircuitBreakers, CircuitBreakers]:
    a, b = clients
    return (
        CircuitBreakers(a, redis_prefix, threshold=3, open_seconds=OPEN_S),
        CircuitBreakers(b, redis_prefix, threshold=3, open_seconds=OPEN_S),
    )


def _gauge(handler: str, host: str) -> float | None:
    return REGISTRY.get_sample_value(
        "orchestrion_circuit_state", {"handler": handler, "host": host}
    )


async def _open(cb: CircuitBreakers, other: CircuitBreakers, target: str = "api.test") -> None:
    for breakers in (cb, other, cb):
        await breakers.before("http", target)
        await breakers.after("http", target, False)


async def test_failures_of_two_workers_open_one_circuit(
    workers: tuple[CircuitBreakers, CircuitBreakers],
) -> None:
    a, b = workers
    await a.after("http", "api.test", False)
    await b.after("http", "api.test", False)
    assert _gauge("http", "api.test") == 0
    await a.after("http", "api.test", False)
    assert _gauge("http", "api.test") == 2
    for breakers in (a, b):
        with pytest.raises(CircuitOpen) as info:
            await breakers.before("http", "api.test")
        error = info.value
        assert error.category == "circuit_open" and error.transient
        assert error.handler == "http" and error.host == "api.test"
        assert 0 < error.retry_in <= OPEN_S
        assert "'http'" in str(error) and "api.test" in str(error) and " s" in str(error)
    # other circuits are not affected
    await a.before("http", "other.test")
    await b.before("llm", "api.test")


async def test_success_in_closed_resets_the_count(
    workers: tuple[CircuitBreakers, CircuitBreakers],
) -> None:
    a, b = workers
    for ok in (False, False, True, False, False):
        await (a if ok else b).after("http", None, ok)
    await a.before("http", None)  # 2 in a row since the success: still closed
    (state,) = await a.states()
    assert state["state"] == "closed" and state["failures"] == 2


async def test_exactly_one_concurrent_caller_gets_the_probe(
    workers: tuple[CircuitBreakers, CircuitBreakers],
) -> None:
    a, b = (
        CircuitBreakers(w.redis, w.prefix, threshold=3, open_seconds=OPEN_S, probe_timeout=60)
        for w in workers
    )
    await _open(a, b)
    await asyncio.sleep(OPEN_S + 0.05)
    # The probe is presumed lost only after a minute, not after OPEN_S: on a loaded machine
    # the twenty calls can take longer than that, and a second probe would then be right.
    results = await asyncio.gather(
        *(w.before("http", "api.test") for _ in range(10) for w in (a, b)),
        return_exceptions=True,
    )
    assert len(results) == 20
    assert results.count(None) == 1
    refused = [r for r in results if r is not None]
    assert all(isinstance(r, CircuitOpen) for r in refused)
    assert {r.state for r in refused if isinstance(r, CircuitOpen)} == {CircuitState.HALF_OPEN}
    assert _gauge("http", "api.test") == 1


async def test_probe_success_closes(workers: tuple[CircuitBreakers, CircuitBreakers]) -> None:
    a, b = workers
    await _open(a, b)
    await asyncio.sleep(OPEN_S + 0.05)
    await b.before("http", "api.test")  # the probe
    await b.after("http", "api.test", True)
    await asyncio.gather(*(w.before("http", "api.test") for w in (a, b, a, b)))
    (state,) = await a.states()
    assert state == {
        "handler": "http",
        "host": "api.test",
        "state": "closed",
        "failures": 0,
        "opened_at": None,
    }
    assert _gauge("http", "api.test") == 0


async def test_probe_failure_reopens(workers: tuple[CircuitBreakers, CircuitBreakers]) -> None:
    a, b = workers
    await _open(a, b)
    (first,) = await a.states()
    await asyncio.sleep(OPEN_S + 0.05)
    await a.before("http", "api.test")
    await a.after("http", "api.test", False)
    (state,) = await b.states()
    assert state["state"] == "open" and state["failures"] == 4
    assert state["opened_at"] > first["opened_at"] + OPEN_S  # open again from now
    with pytest.raises(CircuitOpen) as info:
        await b.before("http", "api.test")
    assert info.value.state is CircuitState.OPEN and info.value.retry_in > OPEN_S / 2


async def test_a_lost_probe_is_replaced(clients: tuple[Redis, Redis], redis_prefix: str) -> None:
    cb = CircuitBreakers(clients[0], redis_prefix, threshold=1, open_seconds=OPEN_S)
    await cb.after("http", "api.test", False)
    await asyncio.sleep(OPEN_S + 0.05)
    await cb.before("http", "api.test")  # the probe's worker dies: no after()
    with pytest.raises(CircuitOpen):
        await cb.before("http", "api.test")
    await asyncio.sleep(OPEN_S + 0.05)
    await cb.before("http", "api.test")  # presumed lost after probe_timeout: a new probe


async def test_states_lists_every_circuit_with_a_ttl(
    workers: tuple[CircuitBreakers, CircuitBreakers], redis_prefix: str
) -> None:
    a, b = workers
    assert await a.states() == []
    await _open(a, b, "[::1]:8443")
    await b.after("python", None, False)
    await a.after("llm", "api.openai.com", True)
    states = await b.states()
    assert [(s["handler"], s["host"], s["state"], s["failures"]) for s in states] == [
        ("http", "[::1]:8443", "open", 3),
        ("llm", "api.openai.com", "closed", 0),
        ("python", "-", "closed", 1),
    ]
    assert isinstance(states[0]["opened_at"], float)
    assert abs(states[0]["opened_at"] - time.time()) < 60  # Redis server time, in epoch seconds
    ttl = await a.redis.ttl(f"{redis_prefix}:circuit:http:[::1]:8443")
    assert 86000 < ttl <= 86400


@pytest.mark.parametrize("seed", range(8))
async def test_the_scripts_follow_the_pure_policy(
    clients: tuple[Redis, Redis], redis_prefix: str, seed: int
) -> None:
    """Random operations with an injected clock: Redis and decide()/record() agree."""
    rng = random.Random(seed)
    now = [1_700_000_000.0]
    threshold = rng.randint(1, 4)
    cb = CircuitBreakers(
        clients[0], redis_prefix, threshold=threshold, open_seconds=10.0, clock=lambda: now[0]
    )
    circuit = Circuit()
    for _ in range(150):
        now[0] += rng.choice([0.0, 0.5, 3.0, 10.0, 12.0])
        if rng.random() < 0.5:
            allowed, circuit = decide(circuit, now[0], 10.0)
            try:
                await cb.before("http", "x.test")
            except CircuitOpen:
                assert not allowed
            else:
                assert allowed
        else:
            ok = rng.random() < 0.4
            circuit = record(circuit, ok, now[0], threshold)
            await cb.after("http", "x.test", ok)
        states = await cb.states()
        if not states:  # nothing was written yet: a closed circuit
            assert circuit == Circuit()
            continue
        (stored,) = states
        assert stored["state"] == circuit.state.value
        assert stored["failures"] == circuit.failures
        assert stored["opened_at"] == (
            None if circuit.opened_at is None else pytest.approx(circuit.opened_at)
        )


# ---------------------------------------------------------------- behind the executor


class _Failing(BaseHTTPRequestHandler):
    """Answers 500 (or 200 once ``healthy`` is set) and counts the requests it got."""

    hits = 0
    healthy = False

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hits += 1
        status, body = (200, b'{"ok": true}') if type(self).healthy else (500, b"down")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def failing_server() -> Iterator[tuple[str, type[_Failing]]]:
    handler = type("Handler", (_Failing,), {"hits": 0, "healthy": False})
    with serving(handler, poll=0.02, daemon_threads=True) as url:
        yield url, handler


async def test_executor_waits_for_the_circuit_once_it_opens(
    clients: tuple[Redis, Redis],
    redis_prefix: str,
    failing_server: tuple[str, type[_Failing]],
) -> None:
    url, handler = failing_server
    host = url.removeprefix("http://")
    cb = CircuitBreakers(clients[0], redis_prefix, threshold=3, open_seconds=OPEN_S)
    http = build_http_client(timeout=5.0, trust_env=False)
    executor = NodeExecutor(
        HandlerRegistry(builtin_specs()), Resources(Controls.unrestricted(), http=http), circuits=cb
    )

    async def attempt(number: int) -> Any:
        events: list[Any] = []
        task = TaskMessage(
            "exec-1",
            "fetch",
            number,
            "http",
            {"url": url + "/items/{{ execution.attempt }}"},
            {},
            {},
            idempotency_key=f"exec-1:fetch:{number}",
            timeout=10.0,
        )
        await executor.execute(task, lambda _execution, event: events.append(event))
        return events[-1]

    try:
        for number in (1, 2, 3):
            result = await attempt(number)
            assert isinstance(result, NodeFailed) and result.error.category == "http_5xx"
        assert handler.hits == 3
        result = await attempt(4)
        # Refused without contacting the server; not a failed attempt: the node waits for
        # the circuit to let a call through again.
        assert isinstance(result, NodeWaiting) and result.reason == "circuit"
        assert result.data is not None and result.data["host"] == host
        assert result.wake_at is not None and result.wake_at - time.time() <= OPEN_S + 0.2
        assert handler.hits == 3
        (state,) = await cb.states()
        assert (state["handler"], state["host"], state["state"]) == ("http", host, "open")

        handler.healthy = True
        await asyncio.sleep(OPEN_S + 0.05)
        assert isinstance(await attempt(5), NodeSucceeded)  # the probe
        assert handler.hits == 4
        (state,) = await cb.states()
        assert state["state"] == "closed" and state["failures"] == 0
    finally:
        await http.aclose()


async def test_a_node_waits_for_its_circuit_within_its_timeout(
    clients: tuple[Redis, Redis], redis_prefix: str
) -> None:
    cb = CircuitBreakers(clients[0], redis_prefix, threshold=1, open_seconds=5.0)
    await cb.before("http", "api.test")
    await cb.after("http", "api.test", False)  # open for 5 s
    http = build_http_client(timeout=5.0, trust_env=False)
    executor = NodeExecutor(
        HandlerRegistry(builtin_specs()), Resources(Controls.unrestricted(), http=http), circuits=cb
    )

    async def attempt(key: str, timeout: float) -> Any:
        events: list[Any] = []
        task = TaskMessage(
            "exec-2",
            "fetch",
            1,
            "http",
            {"url": "http://api.test/x"},
            {},
            {},
            idempotency_key=key,
            timeout=timeout,
        )
        await executor.execute(task, lambda _execution, event: events.append(event))
        return events[-1]

    try:
        waiting = await attempt("exec-2:fetch:1", 30.0)
        assert isinstance(waiting, NodeWaiting) and waiting.reason == "circuit"
        # A circuit that stays open past the node's timeout fails the attempt (retry policy).
        too_long = await attempt("exec-2:fetch:2", 1.0)
        assert isinstance(too_long, NodeFailed) and too_long.error.category == "circuit_open"
        # The first refusal is remembered across wakes (and workers): a wake past the
        # timeout, counted from it, fails too.
        await clients[1].set(cb.wait_key("exec-2:fetch:1"), repr(time.time() - 40))
        late = await attempt("exec-2:fetch:1", 30.0)
        assert isinstance(late, NodeFailed) and late.error.category == "circuit_open"
    finally:
        await http.aclose()
