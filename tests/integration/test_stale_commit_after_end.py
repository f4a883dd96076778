"""An orchestrator that lost an execution commits nothing to it, even once it has ended.

An orchestrator taken for dead (its heartbeat stalled) loses its executions to another, while
it still holds its old machines until its next lease renewal. The new owner drives one to its
end, and an execution that ends is held by nobody any more. A result of an attempt the old
orchestrator had dispatched then reaches its old machine, for which the node is still in
flight: the machine completes the node a second time. Its commit must be refused, as it is
while the new owner holds the execution: the journal would show the node completed twice, and
the execution completed twice.

Real PostgreSQL and Redis; the two orchestrators are engines in this process, and the results
are added to the streams as a worker adds them (no worker runs, so nothing else answers).
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from orchestrion.core.events import NodeSucceeded
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from scaleout import scaleout_settings, until

pytestmark = pytest.mark.slow

FLOW = {
    "name": "one-step",
    "dag": {"nodes": [{"id": "a", "handler": "http", "config": {"url": "http://127.0.0.1:9/a"}}]},
}


async def test_a_stale_machine_does_not_complete_an_ended_execution_again(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    # Leases renewed rarely: the first engine does not notice its loss during the test.
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix, lease_seconds=60)
    async with (
        Engine(settings=settings, resume=False) as first,
        Engine(settings=settings, resume=False) as second,
    ):
        record = await first.start_execution(FLOW)

        async def queued_at_first() -> bool:
            machine = first.live_machine(record.id)
            return machine is not None and machine.node_state("a") is NodeState.QUEUED

        await until(queued_at_first, 10, "a dispatched by the first engine")
        # The second engine takes the execution over while the first still holds it...
        assert await second.adopt(await second.store.get_execution(record.id))
        cluster = second._ownership.cluster
        assert cluster is not None
        # ...and drives it to its end with the result of the attempt it dispatched again.
        await cluster.forward(second.owner, record.id, NodeSucceeded("a", 1, time.time(), {"n": 1}))
        ended = await second.wait(record.id, timeout=20)
        assert ended.status is ExecutionStatus.COMPLETED, ended.error
        # The same attempt's result, from the first engine's own dispatch, reaches its
        # old machine, where a is still queued.
        await cluster.forward(first.owner, record.id, NodeSucceeded("a", 1, time.time(), {"n": 2}))

        async def old_machine_gone() -> bool:
            return first.live_machine(record.id) is None

        # Either way the old machine goes: finished after its commit, or dropped when the
        # commit is refused.
        await until(old_machine_gone, 10, "the first engine's machine gone")
        await first._loop.drain()
        journal = await second.store.list_events(record.id)
        result = await second.store.get_execution(record.id)
        outputs = await second.store.get_outputs(record.id)
    kinds = Counter(event.type for event in journal)
    lines = [(event.type, event.node_id, event.attempt) for event in journal]
    assert kinds["node.completed"] == 1, lines
    assert kinds["execution.completed"] == 1, lines
    assert result.status is ExecutionStatus.COMPLETED
    assert outputs == {"a": {"n": 1}}
