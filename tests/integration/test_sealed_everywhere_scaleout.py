"""Encrypted means every copy, in scale-out mode (real PostgreSQL and Redis, orchestrator and
workers): no value of a classified execution is readable in any PostgreSQL row (every
column cast to text), in any Redis key under the deployment's prefix (streams read entry by
entry, strings, hashes), nor in any command Redis received (task messages, outcomes,
forwarded decisions, pub/sub), dead letters included; the engine still reads it all back."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestrion.cluster.dlq import DeadLetters
from orchestrion.cluster.reaper import Reaper
from orchestrion.cluster.streams import WORKER_GROUP, StreamNames
from orchestrion.cluster.worker import Worker
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.handlers.registry import default_registry
from scaleout import scaleout_engine, scaleout_settings
from sealed_values import (
    Secrets,
    assert_reads_back_plain,
    child_workflow,
    monitored,
    pg_dump,
    redis_dump,
    run_everything,
    shape_node,
)


def assert_nowhere(secrets: Secrets, raw: str, where: str) -> None:
    found = secrets.found_in(raw)
    assert not found, f"{found} readable in {where}"


@pytest.mark.timeout(120)
async def test_no_copy_is_readable_in_postgres_or_redis(
    postgres_url: str, redis_server: str, redis_prefix: str, env_keys: str
) -> None:
    secrets = Secrets()
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        monitored(redis_server) as wire,
        scaleout_engine(postgres_url, redis_server, redis_prefix, workers=2) as engine,
    ):
        # The API process of scale-out mode drives nothing: the decision crosses Redis.
        api = Engine(settings=settings, drive=False)
        await api.start()
        try:
            result, failed_id = await run_everything(engine, secrets, decider=api)
        finally:
            await api.stop(0)
        await assert_reads_back_plain(engine, secrets, result, failed_id)
        keys_left = await redis_dump(redis_server, redis_prefix)
    traffic = "\n".join(wire)
    assert "$enc" in traffic  # sealed task messages and outcomes did cross
    assert_nowhere(secrets, traffic, "the commands Redis received")
    assert_nowhere(secrets, keys_left, "the Redis keys")
    stored = await pg_dump(postgres_url)
    assert "node_runs" in stored and "executions" in stored
    assert_nowhere(secrets, stored, "the PostgreSQL rows")


def parked_workflow() -> dict[str, Any]:
    return {
        "name": "sealed-poison",
        "dag": {
            "nodes": [
                {"id": "input", "handler": "input"},
                shape_node(),
                {"id": "flag", "handler": "noop", "data_classification": "pii"},
            ]
        },
    }


@pytest.mark.timeout(120)
async def test_a_dead_letter_of_a_classified_execution_stays_sealed(
    postgres_url: str, redis_server: str, redis_prefix: str, env_keys: str
) -> None:
    secrets = Secrets()
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix, max_deliveries=1)
    names = StreamNames(redis_prefix)
    stream = names.tasks("python")
    redis = Redis.from_url(redis_server)
    try:
        async with scaleout_engine(
            postgres_url, redis_server, redis_prefix, workers=0, settings={"max_deliveries": 1}
        ) as engine:
            await engine.submit(child_workflow())
            record = await engine.start_execution(parked_workflow(), secrets.inputs())
            await redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
            reply: Any = None
            while not reply:  # a worker reads the task, then dies holding it
                reply = await redis.xreadgroup(
                    WORKER_GROUP, "ghost", {stream: ">"}, count=1, block=5000
                )
            reaper = Reaper(redis_server, settings)
            await reaper.sweep()  # the ghost's heartbeat is missing: noted
            await asyncio.sleep(settings.heartbeat_seconds)
            await reaper.sweep()  # still missing: its task is parked (one delivery is max)
            await reaper.close()
            dlq = DeadLetters(redis, names)
            (letter,) = await dlq.list()
            assert letter.execution_id == record.id and letter.node_id == "shape"
            assert '"$enc"' in letter.payload  # the task as it was sent: sealed
            assert_nowhere(secrets, await redis_dump(redis_server, redis_prefix), "the DLQ")

            live = Worker(redis_server, settings, default_registry(), worker_id="alive")
            await live.start()
            try:
                await dlq.retry(letter.id)
                result = await engine.wait(record.id, timeout=30)
            finally:
                await live.stop(grace=0)
            assert result.status is ExecutionStatus.COMPLETED, result.error
            assert result.nodes["shape"].output["card"] == secrets.card
            assert_nowhere(secrets, await redis_dump(redis_server, redis_prefix), "Redis")
    finally:
        await redis.aclose()
    assert_nowhere(secrets, await pg_dump(postgres_url), "the PostgreSQL rows")
