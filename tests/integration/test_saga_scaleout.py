"""Compensation on real PostgreSQL and Redis workers: a cancel names a node's attempt, and the
node's compensation (which shares its node and attempt number) still runs after one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from orchestrion.cluster.streams import StreamNames
from orchestrion.cluster.wire import encode_task
from orchestrion.core.states import ExecutionStatus
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from scaleout import scaleout_engine, until

UNDONE: Counter[str] = Counter()


@function("saga_so_undo", replace=True)
def saga_so_undo(ctx: NodeContext) -> str:
    UNDONE[ctx.idempotency_key] += 1
    return "undone"


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server)
    yield client
    await client.aclose()


async def test_a_cancelled_attempt_does_not_stop_its_nodes_compensation(
    postgres_url: str, redis_server: str, redis_prefix: str, redis: Redis
) -> None:
    UNDONE.clear()
    names = StreamNames(redis_prefix)
    flow = {
        "name": "saga-cancel-flag",
        "dag": {
            "nodes": [
                {
                    "id": "a",
                    "handler": "python",
                    "compensate": "saga_so_undo",
                    "config": {"function": "saga_so_undo"},
                }
            ]
        },
    }
    async with scaleout_engine(postgres_url, redis_server, redis_prefix) as engine:
        result = await engine.run(flow, timeout=20)
        assert result.status is ExecutionStatus.COMPLETED
        eid = result.execution_id
        # The orchestrator cancelled a's attempt 1 (as the execution timeout does), then asks
        # for a's compensation, which carries the same node and attempt number.
        await redis.set(names.cancelled(eid, "a", 1), "1", ex=60)  # as the cancel sets it
        record = await engine.store.get_execution(eid)
        compiled = engine._definitions.compiled[record.definition_id]
        task = compiled.compensation_message(record, {"a": "undone"}, "a", 1)
        await redis.xadd(
            names.tasks("python"), {"m": encode_task(task, reply_to=names.completions)}
        )

        async def ran() -> bool:
            return UNDONE[f"{eid}:a:compensate"] == 1

        await until(ran, 10, "the compensation to run despite the attempt's cancel flag")
        await asyncio.sleep(0.2)
        assert UNDONE[f"{eid}:a:compensate"] == 1
