"""A result reaching an orchestrator that lost its execution goes on to the new owner.

An orchestrator whose heartbeat stalls (a starved process) is taken for dead: another claims
its executions and drives them on, and the reaper moves its inbox to the shared stream. Until
the stalled one notices (its next lease renewal), it still holds its old machine. A result of
an attempt the new owner dispatched can reach it there; its old machine has never heard of
that attempt and changes nothing with it. The entry must not be acknowledged as a duplicate:
the store says who drives the execution now, and the result is forwarded to it.

Real PostgreSQL and Redis; the two orchestrators are engines in this process, and the
results are added to the streams as a worker adds them (no worker runs, so nothing else
answers the attempts).
"""

from __future__ import annotations

import time

import pytest

from orchestrion.core.events import NodeSucceeded
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from scaleout import scaleout_settings, until

pytestmark = pytest.mark.slow

FLOW = {
    "name": "two-steps",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "http", "config": {"url": "http://127.0.0.1:9/a"}},
            {
                "id": "b",
                "handler": "http",
                "dependencies": ["a"],
                "config": {"url": "http://127.0.0.1:9/b"},
            },
        ]
    },
}


async def test_a_result_for_the_new_owner_is_not_swallowed_by_the_old_machine(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    # Leases renewed rarely: the first engine does not notice its loss during the test.
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix, lease_seconds=60)
    async with (
        Engine(settings=settings, resume=False) as first,
        Engine(settings=settings, resume=False) as second,
    ):
        record = await first.start_execution(FLOW)

        async def a_queued() -> bool:
            machine = first.live_machine(record.id)
            return machine is not None and machine.node_state("a") is NodeState.QUEUED

        await until(a_queued, 10, "a dispatched by the first engine")
        # The second engine takes the execution over while the first still holds it.
        stored = await second.store.get_execution(record.id)
        assert await second.adopt(stored)
        await until(
            lambda: _cluster_sees(first, second.owner), 10, "the second engine's heartbeat seen"
        )
        second_cluster = second._ownership.cluster
        assert second_cluster is not None
        # a's result reaches the new owner, which dispatches b...
        await second_cluster.forward(
            second.owner, record.id, NodeSucceeded("a", 1, time.time(), {"ok": 1})
        )

        async def b_queued() -> bool:
            machine = second.live_machine(record.id)
            return machine is not None and machine.node_state("b") is NodeState.QUEUED

        await until(b_queued, 10, "b dispatched by the second engine")
        # ...whose result reaches the first engine, where a and b never ran.
        await second_cluster.forward(
            first.owner, record.id, NodeSucceeded("b", 1, time.time(), {"ok": 2})
        )
        result = await second.wait(record.id, timeout=20)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.outputs["b"] == {"ok": 2}


async def _cluster_sees(engine: Engine, owner: str) -> bool:
    cluster = engine._ownership.cluster
    alive = cluster.live_owners() if cluster is not None else None
    return alive is not None and owner in alive
