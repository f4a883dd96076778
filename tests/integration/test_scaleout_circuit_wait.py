"""A fan-out to a host whose circuit is open, in scale-out mode on real PostgreSQL and Redis.

While the circuit is open, and while its single probe is in flight, the other branches' calls
are refused. Waiting for the circuit is not an attempt: every branch waits (a durable timer,
the same attempt) and runs once the circuit lets calls through again, instead of spending its
retries on fast failures and failing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from redis.asyncio import Redis

from loopback_listener import serving
from orchestrion.cluster.circuits import CircuitBreakers
from orchestrion.cluster.worker import Worker
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.handlers.registry import default_registry
from scaleout import scaleout_settings

BRANCHES = 12


class _Slow(BaseHTTPRequestHandler):
    """Answers 200 after ``seconds`` (a downstream recovering: the probe takes a while)."""

    hits = 0
    seconds = 1.5

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        type(self).hits += 1
        time.sleep(type(self).seconds)
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def slow_server() -> Iterator[tuple[str, type[_Slow]]]:
    handler = type("Handler", (_Slow,), {"hits": 0})
    with serving(handler, poll=0.02, daemon_threads=True) as url:
        yield url, handler


def fan_out(url: str) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "start", "handler": "noop"}]
    for i in range(BRANCHES):
        nodes.append(
            {
                "id": f"call_{i}",
                "handler": "http",
                "dependencies": ["start"],
                "config": {"url": f"{url}/items/{i}", "method": "GET"},
                "retry": {"max_attempts": 3, "initial_delay": 0.1, "max_delay": 0.2},
                "timeout": 30,
            }
        )
    return {"name": "circuit-fan-out", "dag": {"nodes": nodes}}


@pytest.mark.timeout(120)
async def test_a_fan_out_waits_for_an_open_circuit_instead_of_failing(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    slow_server: tuple[str, type[_Slow]],
) -> None:
    url, handler = slow_server
    host = url.removeprefix("http://")
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    registry = default_registry()
    redis = Redis.from_url(redis_server)
    breakers = CircuitBreakers(redis, redis_prefix, threshold=1, open_seconds=0.5)
    worker = Worker(
        redis_server, settings, registry, concurrency=32, worker_id="w0", breakers=breakers
    )
    await worker.start()
    try:
        # The host failed a moment ago: its circuit is open for half a second.
        await breakers.before("http", host)
        await breakers.after("http", host, False)
        async with Engine(settings=settings, registry=registry) as engine:
            result = await engine.run(fan_out(url), timeout=90)
            assert result.status is ExecutionStatus.COMPLETED, {
                node_id: (run.state.value, run.error) for node_id, run in result.nodes.items()
            }
            for i in range(BRANCHES):
                assert result.nodes[f"call_{i}"].attempt == 1  # no retry spent on the circuit
            waits = await engine.store.list_events(result.execution_id, types=["node.waiting"])
            assert waits and {e.data["reason"] for e in waits} == {"circuit"}
        assert handler.hits == BRANCHES  # one call each: the probe, then the others
        (state,) = await breakers.states()
        assert state["state"] == "closed"
    finally:
        await worker.stop(grace=0)
        await redis.aclose()
