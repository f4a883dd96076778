"""Scale-out mode on real PostgreSQL and Redis: what the protocol promises beyond the engine suite.

The engine suites (test_engine, test_control_flow, test_patterns) already run on PostgreSQL +
Redis Streams; this file covers what only scale-out has: several orchestrators, the API handing
executions over, capability routing, redelivery guards, the reaper and the dead letter queue.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis

from orchestrion.cluster.dlq import DeadLetters
from orchestrion.cluster.reaper import Reaper
from orchestrion.cluster.streams import WORKER_GROUP, StreamNames
from orchestrion.cluster.wire import encode_event, encode_task
from orchestrion.cluster.worker import Worker
from orchestrion.core.events import NodeSucceeded
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import LATER, HandlerSpec, NodeContext
from orchestrion.handlers.python import function
from orchestrion.handlers.registry import default_registry
from orchestrion.settings import load_settings
from orchestrion.store.base import ExecutionRecord
from scaleout import scaleout_engine, scaleout_settings

EFFECTS: Counter[str] = Counter()


@function("so_effect", replace=True)
def so_effect(ctx: NodeContext, value: Any = None) -> Any:
    EFFECTS[ctx.idempotency_key] += 1
    return value


@function("so_sleep", replace=True)
async def so_sleep(ctx: NodeContext, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "slept"


@pytest.fixture(autouse=True)
def _reset() -> None:
    EFFECTS.clear()


@pytest.fixture
def urls(postgres_url: str, redis_server: str, redis_prefix: str) -> tuple[str, str, str]:
    return postgres_url, redis_server, redis_prefix


@pytest.fixture
async def redis(redis_server: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server)
    yield client
    await client.aclose()


def diamond(name: str = "diamond") -> dict[str, Any]:
    def node(node_id: str, deps: list[str]) -> dict[str, Any]:
        return {
            "id": node_id,
            "handler": "python",
            "dependencies": deps,
            "config": {"function": "so_effect", "params": {"value": node_id}},
        }

    return {
        "name": name,
        "dag": {
            "nodes": [
                node("a", []),
                node("b", ["a"]),
                node("c", ["a"]),
                node("d", ["b", "c"]),
            ]
        },
    }


async def completed_events(engine: Engine, execution_id: str) -> Counter[str]:
    events = await engine.store.list_events(execution_id, types=["node.completed"])
    return Counter(e.node_id or "" for e in events)


async def test_two_orchestrators_and_a_handing_over_api_run_each_fan_in_once(
    urls: tuple[str, str, str],
) -> None:
    pg, redis_url, prefix = urls
    settings = scaleout_settings(pg, redis_url, prefix)
    async with (
        scaleout_engine(pg, redis_url, prefix, workers=2) as first,
        Engine(settings=settings) as second,
        Engine(settings=settings, drive=False) as api,
    ):
        started: dict[str, set[str]] = {first.owner: set(), second.owner: set()}
        for engine in (first, second):

            def seen(eid: str, records: list[Any], owner: str = engine.owner) -> None:
                if any(r.type == "execution.started" for r in records):
                    started[owner].add(eid)

            engine.add_listener(seen)
        definition = await api.submit(diamond())
        records = [await api.start_execution(definition, {}) for _ in range(40)]
        results = [await api.wait(r.id, timeout=60) for r in records]
        assert {r.status for r in results} == {ExecutionStatus.COMPLETED}
        for record in records:
            assert await completed_events(api, record.id) == Counter("abcd")
        # Each attempt's side effect happened exactly once.
        assert len(EFFECTS) == 160 and set(EFFECTS.values()) == {1}
        # Both orchestrators took starts from the shared stream, and no start twice.
        assert started[first.owner] and started[second.owner]
        assert not started[first.owner] & started[second.owner]
        assert started[first.owner] | started[second.owner] == {r.id for r in records}
        workers = first.workers  # type: ignore[attr-defined]
        assert sum(w.completed for w in workers) == 160


async def test_api_hand_over_control_reaches_the_driving_orchestrator(
    urls: tuple[str, str, str],
) -> None:
    pg, redis_url, prefix = urls
    settings = scaleout_settings(pg, redis_url, prefix)
    flow = {
        "name": "gate",
        "dag": {
            "nodes": [
                {"id": "ok", "handler": "approval"},
                {"id": "after", "handler": "noop", "dependencies": ["ok"]},
            ]
        },
    }
    slow = {
        "name": "slow",
        "dag": {
            "nodes": [
                {
                    "id": "nap",
                    "handler": "python",
                    "config": {"function": "so_sleep", "params": {"seconds": 30}},
                }
            ]
        },
    }
    async with (
        scaleout_engine(pg, redis_url, prefix) as orchestrator,
        Engine(settings=settings, drive=False) as api,
    ):
        gated = await api.start_execution(flow, {})
        await wait_for(api, gated.id, lambda r: r.nodes["ok"].state is NodeState.WAITING)
        await api.decide(gated.id, "ok", approved=True, by="ada", comment="fine")
        done = await api.wait(gated.id, timeout=20)
        assert done.status is ExecutionStatus.COMPLETED
        assert done.nodes["ok"].output["decided_by"] == "ada"

        napping = await api.start_execution(slow, {})
        await wait_for(api, napping.id, lambda r: r.nodes["nap"].state is NodeState.RUNNING)
        await api.cancel(napping.id, "changed my mind")
        cancelled = await api.wait(napping.id, timeout=20)
        assert cancelled.status is ExecutionStatus.CANCELLED
        assert orchestrator.is_live(gated.id) is False


async def wait_for(engine: Engine, execution_id: str, check: Any, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await engine.result(execution_id)
        if check(result):
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not reached: {result}")
        await asyncio.sleep(0.05)


async def test_capabilities_route_to_the_workers_that_declare_them(
    urls: tuple[str, str, str],
) -> None:
    pg, redis_url, prefix = urls
    settings = scaleout_settings(pg, redis_url, prefix)
    flow = {
        "name": "caps",
        "dag": {
            "nodes": [
                {"id": "plain", "handler": "noop"},
                {"id": "needs_gpu", "handler": "noop", "capabilities": ["gpu"]},
            ]
        },
    }
    async with scaleout_engine(pg, redis_url, prefix) as engine:
        record = await engine.start_execution(flow, {})
        # The plain worker runs the plain node and leaves the gpu one alone.
        await wait_for(engine, record.id, lambda r: r.nodes["plain"].state is NodeState.COMPLETED)
        await asyncio.sleep(0.5)
        assert (await engine.result(record.id)).nodes["needs_gpu"].state is NodeState.QUEUED
        gpu = Worker(redis_url, settings, default_registry(), capabilities=["gpu"])
        await gpu.start()
        try:
            result = await engine.wait(record.id, timeout=20)
            assert result.status is ExecutionStatus.COMPLETED
            assert gpu.completed == 1
        finally:
            await gpu.stop(grace=0)


async def test_a_redelivered_completion_and_a_redelivered_task_are_no_ops(
    urls: tuple[str, str, str], redis: Redis
) -> None:
    pg, redis_url, prefix = urls
    names = StreamNames(prefix)
    async with scaleout_engine(pg, redis_url, prefix) as engine:
        result = await engine.run(diamond(), timeout=20)
        assert result.status is ExecutionStatus.COMPLETED
        eid = result.execution_id
        # The same completion again, twice, on the shared stream and the engine's inbox.
        late = NodeSucceeded("d", 1, time.time(), "again")
        for stream in (names.completions, names.inbox(engine.owner)):
            await redis.xadd(stream, {"m": encode_event(eid, late)})
        # The same task again: the worker finds its guard done and does not run it.
        record = await engine.store.get_execution(eid)
        live_task = engine._definitions.compiled[record.definition_id].task_message(
            record, {}, "a", 1, None
        )
        await redis.xadd(
            names.tasks("python"), {"m": encode_task(live_task, reply_to=names.completions)}
        )
        await asyncio.sleep(1.0)
        assert await completed_events(engine, eid) == Counter("abcd")
        assert set(EFFECTS.values()) == {1}
        assert (await engine.result(eid)).result == result.result


async def test_the_tasks_of_one_read_check_their_guards_in_one_round_trip(
    urls: tuple[str, str, str], redis: Redis
) -> None:
    pg, redis_url, prefix = urls
    wide = {
        "name": "wide",
        "dag": {
            "nodes": [{"id": "root", "handler": "noop"}]
            + [{"id": f"n{i}", "handler": "noop", "dependencies": ["root"]} for i in range(100)]
        },
    }

    async def mget_calls() -> int:
        stats = await redis.info("commandstats")
        return int(stats.get("cmdstat_mget", {}).get("calls", 0))

    async with scaleout_engine(pg, redis_url, prefix) as engine:
        before = await mget_calls()
        result = await engine.run(wide, timeout=30)
        calls = await mget_calls() - before
    assert result.status is ExecutionStatus.COMPLETED
    # One MGET per task would be 101; the 100 siblings arrive in a few reads.
    assert calls < 40, calls


async def test_a_worker_runs_an_attempt_with_nothing_to_wait_for_through_run_now(
    urls: tuple[str, str, str],
) -> None:
    """With the orchestrator's inline attempts off, every attempt reaches a worker, which runs
    it as the engine would in its turn: the handler's ``run_now`` answers, ``run`` is never
    awaited, and the journal reads as for any attempt; ``LATER`` falls back to ``run``."""
    pg, redis_url, prefix = urls
    calls: Counter[str] = Counter()

    async def run(ctx: NodeContext, config: Any) -> Any:
        calls["run"] += 1
        return {"by": "run"}

    def run_now(ctx: NodeContext, config: Any) -> Any:
        calls["run_now"] += 1
        return LATER if ctx.node_id == "later" else {"by": "run_now"}

    registry = default_registry().copy()
    registry.register(HandlerSpec(name="quick_probe", run=run, run_now=run_now))
    flow = {
        "name": "run-now-on-a-worker",
        "dag": {
            "nodes": [
                {"id": "now", "handler": "quick_probe"},
                {"id": "later", "handler": "quick_probe", "dependencies": ["now"]},
            ]
        },
    }
    async with scaleout_engine(
        pg, redis_url, prefix, registry=registry, settings={"inline_attempts": False}
    ) as engine:
        result = await engine.run(flow, timeout=30)
        events = await engine.store.list_events(result.execution_id)
        answered = sum(worker.completed for worker in engine.workers)  # type: ignore[attr-defined]
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert answered == 2
    assert result.outputs["now"] == {"by": "run_now"}
    assert result.outputs["later"] == {"by": "run"}
    assert calls == {"run_now": 2, "run": 1}
    for node_id in ("now", "later"):
        kinds = [e.type for e in events if e.node_id == node_id]
        assert kinds == ["node.queued", "node.started", "node.completed"], (node_id, kinds)


async def test_the_orchestrator_runs_nodes_with_nothing_to_wait_for_in_its_turn(
    urls: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A short chain of no-ops and a condition never crosses Redis (a long one would, once the
    turn's 5 ms for such attempts are spent), and the journal is the same as a worker's; a
    node that asks for a capability still goes to a worker that declares it."""
    # A loaded machine can take the process off its core for more than the turn's 5 ms in
    # the middle of the chain: give the turn time enough that only the handlers decide.
    monkeypatch.setattr("orchestrion.engine.loop._INLINE_BUDGET", 5.0)
    pg, redis_url, prefix = urls
    nodes: list[dict[str, Any]] = [{"id": "c0", "handler": "noop", "config": {"value": 0}}]
    for i in range(1, 6):
        config: dict[str, Any] = {"value": i}
        handler = "noop"
        if i % 3 == 0:  # after a noop, before another: a condition choosing the next node
            handler = "condition"
            config = {"cases": [{"when": f"c{i - 1}.output == {i - 1}", "then": [f"c{i + 1}"]}]}
        nodes.append(
            {"id": f"c{i}", "handler": handler, "dependencies": [f"c{i - 1}"], "config": config}
        )
    nodes.append({"id": "gpu", "handler": "noop", "dependencies": ["c5"], "capabilities": ["gpu"]})
    async with scaleout_engine(pg, redis_url, prefix) as engine:
        gpu = Worker(
            redis_url,
            scaleout_settings(pg, redis_url, prefix),
            default_registry(),
            capabilities=["gpu"],
        )
        await gpu.start()
        try:
            result = await engine.run({"name": "inline-chain", "dag": {"nodes": nodes}}, timeout=30)
            events = await engine.store.list_events(result.execution_id)
        finally:
            await gpu.stop(grace=0)
        plain = sum(worker.completed for worker in engine.workers)  # type: ignore[attr-defined]
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert (plain, gpu.completed) == (0, 1)
    for node in nodes:
        kinds = [e.type for e in events if e.node_id == node["id"]]
        assert kinds == ["node.queued", "node.started", "node.completed"], (node["id"], kinds)


async def test_a_node_shows_running_while_it_runs_and_a_quick_one_starts_before_it_ends(
    urls: tuple[str, str, str],
) -> None:
    """A worker holds a start back 50 ms: a quick attempt sends it with its outcome, a long
    one as soon as the 50 ms are over."""
    pg, redis_url, prefix = urls
    flow = {
        "name": "slow-and-quick",
        "dag": {
            "nodes": [
                {"id": "quick", "handler": "noop"},
                {
                    "id": "slow",
                    "handler": "python",
                    "dependencies": ["quick"],
                    "config": {"function": "so_sleep", "params": {"seconds": 1.5}},
                },
            ]
        },
    }
    async with scaleout_engine(pg, redis_url, prefix) as engine:
        record = await engine.start_execution(await engine.submit(flow))
        deadline = time.monotonic() + 10
        while True:
            states = {r.node_id: r.state for r in await engine.store.get_node_runs(record.id)}
            if states.get("slow") is NodeState.RUNNING:
                break
            assert time.monotonic() < deadline, states
            await asyncio.sleep(0.05)
        result = await engine.wait(record.id, timeout=20)
        events = await engine.store.list_events(record.id)
    assert result.status is ExecutionStatus.COMPLETED
    for node_id in ("quick", "slow"):
        kinds = [e.type for e in events if e.node_id == node_id]
        assert kinds == ["node.queued", "node.started", "node.completed"], (node_id, kinds)


async def test_the_reaper_gives_a_dead_workers_task_to_a_live_one(
    urls: tuple[str, str, str], redis: Redis
) -> None:
    pg, redis_url, prefix = urls
    settings = scaleout_settings(pg, redis_url, prefix)
    names = StreamNames(prefix)
    async with scaleout_engine(pg, redis_url, prefix, workers=0) as engine:
        record = await engine.start_execution(diamond(), {})
        # A worker that takes node a and dies: no heartbeat, never acknowledges.
        stream = names.tasks("python")
        await redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
        taken = await redis.xreadgroup(WORKER_GROUP, "ghost", {stream: ">"}, count=10, block=5000)
        assert taken and len(taken[0][1]) == 1
        live = Worker(redis_url, settings, default_registry(), worker_id="alive")
        await live.start()
        try:
            await asyncio.sleep(0.3)
            assert (await engine.result(record.id)).nodes["a"].state is NodeState.QUEUED
            reaper = Reaper(redis_url, settings)
            # A heartbeat missing for less than a heartbeat period (Redis just lost its data,
            # every beat is missing until the next one) takes nothing from the worker.
            assert (await reaper.sweep()).reclaimed == 0
            await redis.set(names.worker("ghost"), "{}", ex=5)  # it beats again
            await asyncio.sleep(settings.heartbeat_seconds)
            assert (await reaper.sweep()).reclaimed == 0
            await redis.delete(names.worker("ghost"))  # now it is gone for good
            assert (await reaper.sweep()).reclaimed == 0
            await asyncio.sleep(settings.heartbeat_seconds)
            sweep = await reaper.sweep()
            await reaper.close()
            assert sweep.reclaimed == 1
            result = await engine.wait(record.id, timeout=20)
            assert result.status is ExecutionStatus.COMPLETED
            assert result.nodes["a"].attempt == 1  # the same attempt, delivered again
        finally:
            await live.stop(grace=0)


async def test_a_worker_takes_up_again_a_task_it_read_but_could_not_finish(
    urls: tuple[str, str, str], redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An entry left pending with a live worker (Redis went away between its read and its
    answer) runs again on that worker, long before the reaper's idle timeout."""
    pg, redis_url, prefix = urls
    monkeypatch.setattr("orchestrion.cluster.leases.OWN_RECLAIM_IDLE", 0.5)
    settings = scaleout_settings(pg, redis_url, prefix)
    names = StreamNames(prefix)
    async with scaleout_engine(pg, redis_url, prefix, workers=0) as engine:
        record = await engine.start_execution(diamond("stranded"), {})
        stream = names.tasks("python")
        await redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
        taken = await redis.xreadgroup(WORKER_GROUP, "same", {stream: ">"}, count=10, block=5000)
        assert taken and len(taken[0][1]) == 1  # read by "same", then its answer was lost
        worker = Worker(redis_url, settings, default_registry(), worker_id="same")
        await worker.start()
        try:
            result = await engine.wait(record.id, timeout=20)
            assert result.status is ExecutionStatus.COMPLETED
            assert result.nodes["a"].attempt == 1
        finally:
            await worker.stop(grace=0)


async def test_when_redis_loses_its_data_in_flight_work_and_starts_are_sent_again(
    urls: tuple[str, str, str], redis: Redis
) -> None:
    """Redis restarted without persistence, seen by a running orchestrator: the attempt that
    was queued and the start that was handed over (both gone with the data) go out again."""
    pg, redis_url, prefix = urls
    settings = scaleout_settings(pg, redis_url, prefix)
    async with scaleout_engine(pg, redis_url, prefix, workers=0) as engine:
        queued = await engine.start_execution(diamond("lost-task"), {})
        definition = await engine.submit(diamond("lost-start"))
        # A start the API handed over, whose message was lost before anyone read it.
        handed = ExecutionRecord(
            id=str(uuid.uuid4()),
            definition_id=definition.id,
            status=ExecutionStatus.PENDING,
            created_at=time.time(),
            correlation_id="lost-start",
        )
        await engine.store.create_execution(handed)
        await asyncio.sleep(0.3)
        keys = [key async for key in redis.scan_iter(match=f"{prefix}:*")]
        await redis.delete(*keys)  # every stream, group, guard and the epoch: gone
        live = Worker(redis_url, settings, default_registry(), worker_id="after")
        await live.start()
        try:
            for eid in (queued.id, handed.id):
                result = await engine.wait(eid, timeout=20)
                assert result.status is ExecutionStatus.COMPLETED, result
        finally:
            await live.stop(grace=0)


async def test_a_poison_task_is_parked_then_retried_or_dropped_from_the_dlq(
    urls: tuple[str, str, str], redis: Redis
) -> None:
    pg, redis_url, prefix = urls
    settings = scaleout_settings(pg, redis_url, prefix, max_deliveries=2)
    names = StreamNames(prefix)
    stream = names.tasks("python")
    dlq = DeadLetters(redis, names)
    async with scaleout_engine(
        pg, redis_url, prefix, workers=0, settings={"max_deliveries": 2}
    ) as engine:
        first = await engine.start_execution(diamond("poison-1"), {})
        second = await engine.start_execution(diamond("poison-2"), {})
        await redis.xgroup_create(stream, WORKER_GROUP, id="0", mkstream=True)
        reaper = Reaper(redis_url, settings)
        for ghost in ("ghost-1", "ghost-2"):  # two workers die on the same messages
            got = 0
            while got < 2:
                reply = await redis.xreadgroup(
                    WORKER_GROUP, ghost, {stream: ">"}, count=10, block=5000
                )
                got += len(reply[0][1]) if reply else 0
            await reaper.sweep()  # the ghost's heartbeat is missing: noted
            await asyncio.sleep(settings.heartbeat_seconds)
            await reaper.sweep()  # still missing a heartbeat period later: gone
        await reaper.close()
        letters = await dlq.list()
        assert sorted(letter.execution_id for letter in letters) == sorted([first.id, second.id])
        letter = next(x for x in letters if x.execution_id == first.id)
        assert letter.category == "delivery" and letter.deliveries == 2
        assert letter.node_id == "a" and letter.attempt == 1 and letter.handler == "python"
        assert "delivered 2 times" in letter.message and letter.parked_at > 0
        # Parked is not failed: the node waits for an operator.
        assert (await engine.result(first.id)).status is ExecutionStatus.RUNNING

        live = Worker(redis_url, settings, default_registry(), worker_id="alive")
        await live.start()
        try:
            await dlq.retry(letter.id)
            assert (await engine.wait(first.id, timeout=20)).status is ExecutionStatus.COMPLETED
            other = next(x for x in letters if x.execution_id == second.id)
            await dlq.drop(other.id)
            dropped = await engine.wait(second.id, timeout=20)
            assert dropped.status is ExecutionStatus.FAILED
            assert dropped.nodes["a"].error["category"] == "dead_letter"
            assert await dlq.count() == 0
        finally:
            await live.stop(grace=0)


REFERENCE = Path(__file__).resolve().parents[2] / "examples" / "reference"
REFERENCE_INPUTS: dict[str, dict[str, Any]] = {
    "dora-compliance-assessment.yaml": {"documents": ["policy.pdf"]},
    "parallel_processing.json": {"user_id": 1},
}


@pytest.mark.timeout(180)
async def test_reference_examples_end_the_same_on_scale_out_as_embedded(
    urls: tuple[str, str, str],
) -> None:
    """Every reference example, as written, reaches the same final state node by node on
    PostgreSQL + Redis with workers as in the embedded engine (offline: HTTP nodes fail
    after their retries the same way)."""
    pg, redis_url, prefix = urls
    files = sorted(p for p in REFERENCE.iterdir() if p.suffix in (".json", ".yaml"))
    assert len(files) == 7

    async def run_all(engine: Engine) -> dict[str, Any]:
        async def one(path: Path) -> Any:
            inputs = REFERENCE_INPUTS.get(path.name, {})
            record = await engine.start_execution(path, inputs)
            result = await engine.wait(record.id, timeout=150)
            nodes = {n: (r.state, r.attempt) for n, r in result.nodes.items()}
            return result.status, nodes

        outcomes = await asyncio.gather(*(one(path) for path in files))
        return dict(zip([p.name for p in files], outcomes, strict=True))

    teams = str(REFERENCE.parent / "teams.yaml")  # the teams the DORA example's rules name
    async with Engine(
        settings=load_settings(database_url="memory://", teams_file=teams)
    ) as embedded:
        expected = await run_all(embedded)
    async with scaleout_engine(
        pg, redis_url, prefix, workers=2, settings={"teams_file": teams}
    ) as scaled:
        got = await run_all(scaled)
    assert got == expected


async def test_last_two_dependencies_completing_at_once_on_two_orchestrators_fire_the_fan_in_once(
    urls: tuple[str, str, str], redis: Redis
) -> None:
    """b and c complete in the same millisecond, their results read by two orchestrators from
    the shared stream: the one that does not drive the execution forwards, and d is queued
    and dispatched exactly once."""
    pg, redis_url, prefix = urls
    names = StreamNames(prefix)
    settings = scaleout_settings(pg, redis_url, prefix)
    async with (
        scaleout_engine(pg, redis_url, prefix, workers=0) as owner,
        Engine(settings=settings) as other,
    ):
        record = await owner.start_execution(diamond("same-ms"), {})
        eid = record.id
        now = time.time()
        await redis.xadd(
            names.completions, {"m": encode_event(eid, NodeSucceeded("a", 1, now, "a"))}
        )
        await wait_for(owner, eid, lambda r: r.nodes["b"].state is NodeState.QUEUED)
        at = time.time()
        async with redis.pipeline(transaction=True) as pipe:  # both in one instant
            for node in ("b", "c"):
                pipe.xadd(names.completions, {"m": encode_event(eid, NodeSucceeded(node, 1, at))})
            await pipe.execute()
        await wait_for(owner, eid, lambda r: r.nodes["d"].state is NodeState.QUEUED)
        await asyncio.sleep(0.5)
        queued = await owner.store.list_events(eid, types=["node.queued"])
        assert Counter(e.node_id for e in queued) == Counter("abcd")
        tasks = await redis.xrange(names.tasks("python"))
        sent = Counter(json.loads(fields[b"m"])["task"]["node_id"] for _, fields in tasks)
        assert sent == Counter("abcd")  # nobody consumed them: every dispatch is still there
        assert other.is_live(eid) is False
