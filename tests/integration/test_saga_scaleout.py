"""Compensation on real PostgreSQL and Redis workers: a cancel names a node's attempt, and the
node's compensation (which shares its node and attempt number) still runs after one; a cancel
of the execution sent from another process while it compensates is recorded, and the
compensation runs to its end."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from orchestrion.cluster.streams import StreamNames
from orchestrion.cluster.wire import encode_task
from orchestrion.core.control import cancel_request
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.core.task_kinds import TaskKind
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from scaleout import scaleout_engine, scaleout_settings, until

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


CANCEL_FLOW = {
    "name": "saga-cancel-while-compensating",
    "dag": {
        "nodes": [
            {
                "id": "a",
                "handler": "noop",
                "compensate": {
                    "handler": "python",
                    "config": {"function": "sleep", "params": {"seconds": 2}},
                },
            },
            {
                "id": "b",
                "handler": "noop",
                "dependencies": ["a"],
                "compensate": {
                    "handler": "python",
                    "config": {"function": "fail", "params": {"message": "undo b broke"}},
                },
            },
            {
                "id": "d",
                "handler": "python",
                "dependencies": ["b"],
                "retry": {"max_attempts": 1},
                "config": {"function": "fail", "params": {"message": "d went wrong"}},
            },
        ]
    },
}


async def test_a_cancel_while_compensating_is_recorded_and_the_saga_runs_to_its_end(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix),
        Engine(settings=settings, drive=False) as api,  # an API process: cancels go over Redis
    ):
        eid = (await api.start_execution(await api.submit(CANCEL_FLOW))).id

        async def compensating() -> bool:  # b's undo failed: a's (which sleeps) runs now
            events = await api.store.list_events(eid, after_seq=0, limit=100)
            return any(e.type == RecordType.NODE_COMPENSATION_FAILED for e in events)

        await until(compensating, 20, "the execution compensating")
        await api.cancel(eid, "stop it")

        async def recorded() -> bool:
            record = await api.reads.execution(eid)
            return cancel_request(record.error) is not None

        await until(recorded, 10, "the cancel recorded in the execution's error")
        assert (await api.reads.execution(eid)).status is ExecutionStatus.RUNNING

        async def ended() -> bool:
            return (await api.reads.execution(eid)).status is ExecutionStatus.FAILED

        await until(ended, 20, "the compensation's end")
        record = await api.reads.execution(eid)
        runs = {run.node_id: run for run in await api.reads.node_runs(eid)}
        events = await api.store.list_events(eid, after_seq=0, limit=100)
    assert runs["a"].state is NodeState.COMPENSATED  # not interrupted
    assert runs["b"].compensation == "failed"
    assert record.error is not None and record.error["category"] == "node_failed"
    assert record.error["cancel_requested"]["reason"] == "stop it"
    assert "cancel requested while compensating (stop it)" in record.error["message"]
    kinds = [e.type for e in events]
    asked = kinds.index(RecordType.EXECUTION_CANCEL_REQUESTED)
    assert kinds.index(RecordType.EXECUTION_COMPENSATING) < asked
    assert asked < kinds.index(RecordType.EXECUTION_FAILED)
    assert RecordType.EXECUTION_CANCELLED not in kinds


HANGING: dict[str, str] = {}  # execution id -> "started", then "cancelled"


@function("saga_so_hang", replace=True)
async def saga_so_hang(ctx: NodeContext) -> str:
    HANGING[ctx.execution_id] = "started"
    try:
        await asyncio.sleep(600)
    except asyncio.CancelledError:
        HANGING[ctx.execution_id] = "cancelled"
        raise
    return "undone"


HANG_FLOW = {
    "name": "saga-forced-on-a-worker",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop", "compensate": "saga_so_hang"},
            {
                "id": "b",
                "handler": "python",
                "dependencies": ["a"],
                "retry": {"max_attempts": 1},
                "config": {"function": "fail", "params": {"message": "b went wrong"}},
            },
        ]
    },
}


async def test_a_forced_cancel_stops_the_compensation_running_on_a_worker(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix) as engine,
        Engine(settings=settings, drive=False) as api,  # the cancel comes from an API process
    ):
        worker = engine.workers[0]  # type: ignore[attr-defined]
        eid = (await api.start_execution(await api.submit(HANG_FLOW))).id

        async def compensating() -> bool:
            return HANGING.get(eid) == "started"

        await until(compensating, 20, "a's compensation running on the worker")
        await api.cancel(eid, "stop now", force=True)

        async def stopped() -> bool:
            return HANGING.get(eid) == "cancelled"

        await until(stopped, 10, "the compensation on the worker cancelled")
        await until(lambda: _idle(worker), 5, "the worker's slot given back")
        record = await api.reads.execution(eid)
    assert record.status is ExecutionStatus.CANCELLED
    assert record.error is not None and record.error["abandoned"] == ["a"]


async def _idle(worker: object) -> bool:
    return worker._busy == 0  # type: ignore[attr-defined]


async def test_a_compensation_abandoned_before_a_worker_took_it_never_runs(
    postgres_url: str, redis_server: str, redis_prefix: str, redis: Redis
) -> None:
    UNDONE.clear()
    names = StreamNames(redis_prefix)
    flow = {
        "name": "saga-cancel-flag-compensation",
        "dag": {"nodes": [{"id": "a", "handler": "noop", "compensate": "saga_so_undo"}]},
    }
    async with scaleout_engine(postgres_url, redis_server, redis_prefix) as engine:
        result = await engine.run(flow, timeout=20)
        eid = result.execution_id
        record = await engine.store.get_execution(eid)
        compiled = engine._definitions.compiled[record.definition_id]
        task = compiled.compensation_message(record, {"a": {}}, "a", 1)
        dispatcher = engine._dispatcher
        assert dispatcher is not None
        # A forced cancel abandons a's compensation while its task waits in the stream.
        await dispatcher.cancel(eid, "a", 1, TaskKind.COMPENSATE)
        await redis.xadd(
            names.tasks("python"), {"m": encode_task(task, reply_to=names.completions)}
        )

        async def taken() -> bool:  # read, skipped and acknowledged
            pending = await redis.xpending(names.tasks("python"), "workers")
            return await redis.xlen(names.tasks("python")) == 0 and pending["pending"] == 0

        await until(taken, 10, "the abandoned compensation's task taken off the stream")
        assert UNDONE[f"{eid}:a:compensate"] == 0
        # Compensated again later (a retry that fails again): the flag is no obstacle.
        await dispatcher.dispatch([task])

        async def ran() -> bool:
            return UNDONE[f"{eid}:a:compensate"] == 1

        await until(ran, 10, "a later compensation of the same node and attempt to run")


async def test_each_failure_of_a_retried_execution_undoes_its_nodes_once(
    postgres_url: str, redis_server: str, redis_prefix: str, redis: Redis
) -> None:
    # A compensation is sent once per failure: the same one sent again (a takeover, the
    # periodic re-dispatch) adds nothing, while the next failure after a retry undoes anew.
    UNDONE.clear()
    names = StreamNames(redis_prefix)
    flow = {
        "name": "saga-retry-undoes-again",
        "on_failure": "compensate",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop", "compensate": "saga_so_undo"},
                {
                    "id": "d",
                    "handler": "python",
                    "dependencies": ["a"],
                    "retry": {"max_attempts": 1},
                    "config": {"function": "fail", "params": {"message": "d went wrong"}},
                },
            ]
        },
    }
    async with scaleout_engine(postgres_url, redis_server, redis_prefix) as engine:
        result = await engine.run(flow, timeout=20)
        eid = result.execution_id
        assert result.status is ExecutionStatus.FAILED
        assert UNDONE[f"{eid}:a:compensate"] == 1
        record = await engine.store.get_execution(eid)
        compiled = engine._definitions.compiled[record.definition_id]
        dispatcher = engine._dispatcher
        assert dispatcher is not None
        # The first failure's compensation sent again, long after it ran: nothing is added.
        before = await redis.xlen(names.tasks("python"))
        await dispatcher.dispatch([compiled.compensation_message(record, {"a": {}}, "a", 1, 1)])
        assert await redis.xlen(names.tasks("python")) == before
        # Redelivered from the stream (a worker's crash after the answer): not run again.
        task = compiled.compensation_message(record, {"a": {}}, "a", 1, 1)
        await redis.xadd(
            names.tasks("python"), {"m": encode_task(task, reply_to=names.completions)}
        )

        async def taken() -> bool:
            pending = await redis.xpending(names.tasks("python"), "workers")
            return await redis.xlen(names.tasks("python")) == 0 and pending["pending"] == 0

        await until(taken, 10, "the redelivered compensation taken off the stream")
        assert UNDONE[f"{eid}:a:compensate"] == 1

        await engine.retry(eid)

        async def undone_again() -> bool:
            again = await engine.store.get_execution(eid)
            return again.status is ExecutionStatus.FAILED and UNDONE[f"{eid}:a:compensate"] == 2

        await until(undone_again, 20, "the second failure to undo a again")
        await asyncio.sleep(0.3)
        assert UNDONE[f"{eid}:a:compensate"] == 2
        events = await engine.store.list_events(eid, types=[RecordType.NODE_COMPENSATED.value])
        assert [e.node_id for e in events] == ["a", "a"]
