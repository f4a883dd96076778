"""The operator surface of scale-out mode on real PostgreSQL and Redis.

The API runs in process (httpx over ASGI, the app's lifespan) as in scale-out: its engine hands
executions to orchestrators, and it has a Redis client of its own. Covered: the dead letter queue
over HTTP (list with paging, show, retry, drop; roles; unknown ids; embedded mode), ``/health``
with live workers and orchestrators (real ``Worker`` and orchestrator ``Engine`` objects), the
degraded answers, ``/metrics`` with the cluster gauges (and when Redis is down), and
``orchestrion dlq`` on Redis directly and through a real HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families
from redis.asyncio import Redis
from typer.testing import CliRunner

from orchestrion.api import create_app
from orchestrion.cli.app import app as cli
from orchestrion.cli.exits import EXIT_DENIED, EXIT_NOT_FOUND
from orchestrion.client import AsyncClient, Forbidden, NotFound
from orchestrion.cluster.circuits import CircuitBreakers
from orchestrion.cluster.connection import ensure_group
from orchestrion.cluster.dlq import DeadLetters
from orchestrion.cluster.reaper import Reaper
from orchestrion.cluster.streams import WORKER_GROUP, StreamNames
from orchestrion.cluster.wire import decode_event, encode_task, loads
from orchestrion.cluster.worker import Worker
from orchestrion.core.events import NodeFailed
from orchestrion.dispatch.base import TaskMessage
from orchestrion.engine.facade import Engine
from orchestrion.errors import ExecutionNotFound as OrchestrionNotFound
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.handlers.registry import default_registry
from orchestrion.settings import Settings, load_settings
from scaleout import scaleout_engine, scaleout_settings, until

PROBLEM = "application/problem+json"
KEYS = "adm-key:admin,op-key:operator,view-key:viewer"
ADMIN = {"Authorization": "Bearer adm-key"}
OPERATOR = {"Authorization": "Bearer op-key"}
VIEWER = {"Authorization": "Bearer view-key"}

ONE_NODE = {
    "name": "dead-lettered",
    "dag": {"nodes": [{"id": "a", "handler": "noop", "config": {"value": "done"}}]},
}


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    settings: Settings
    redis: Redis
    names: StreamNames

    @property
    def dlq(self) -> DeadLetters:
        return DeadLetters(self.redis, self.names)

    async def until(self, execution_id: str, *states: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = (await self.client.get(f"/v1/workflows/{execution_id}", headers=ADMIN)).json()
            if body["status"] in states:
                return dict(body)
            assert time.monotonic() < deadline, f"{execution_id} stayed {body['status']}"
            await asyncio.sleep(0.05)


def api_settings(postgres_url: str, redis_url: str, prefix: str, **extra: Any) -> Settings:
    return scaleout_settings(
        postgres_url,
        redis_url,
        prefix,
        api_keys=KEYS,
        rate_limit_per_second=0,
        shutdown_grace=0,
        **extra,
    )


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, engine_settings: Settings | None = None
) -> AsyncIterator[Api]:
    """The API as ``orchestrion serve`` runs it in scale-out mode (an engine that does not
    drive), started by hand because ASGITransport runs no lifespan of its own."""
    engine = Engine(settings=engine_settings or settings, drive=False)
    await engine.start()
    app = create_app(engine, settings)
    redis = Redis.from_url(engine.settings.redis_url or "")
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Api(client, app, settings, redis, StreamNames(settings.redis_prefix))
    finally:
        await redis.aclose()
        await engine.stop(0)


@pytest.fixture
def settings(postgres_url: str, redis_server: str, redis_prefix: str) -> Settings:
    return api_settings(postgres_url, redis_server, redis_prefix)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with serving(settings) as running:
        yield running


async def park(
    redis: Redis,
    names: StreamNames,
    execution_id: str,
    *,
    node_id: str = "a",
    handler: str = "python",
    deliveries: int = 5,
) -> str:
    """What the reaper does to a poison message: a real task entry, read by a worker that
    never answered, moved to the DLQ. The dead letter's id."""
    stream = names.tasks(handler)
    await ensure_group(redis, stream, WORKER_GROUP)
    task = TaskMessage(
        execution_id=execution_id,
        node_id=node_id,
        attempt=2,
        handler=handler,
        config={"function": "noop"},
        inputs={"user_id": 7},
        outputs={},
        idempotency_key=f"{execution_id}:{node_id}:2",
    )
    sent = time.time() - 120
    payload = encode_task(
        task, reply_to=names.completions, deliveries=deliveries, sent_at=sent, first_sent_at=sent
    )
    entry_id = await redis.xadd(stream, {"m": payload})
    reply = await redis.xreadgroup(WORKER_GROUP, "ghost", {stream: ">"}, count=1)
    assert reply and reply[0][1][0][0] == entry_id
    return await DeadLetters(redis, names).park(
        stream,
        entry_id,
        loads(payload),
        payload,
        category="delivery",
        message=f"delivered {deliveries} times without an answer",
        traceback="Traceback (most recent call last):\n  ...\nRuntimeError: worker hung",
    )


# ------------------------------------------------------------------ the DLQ over HTTP


async def test_dlq_list_pages_show_retry_drop(api: Api) -> None:
    ids = [await park(api.redis, api.names, f"exec-{n}", node_id=f"n{n}") for n in range(3)]

    first = await api.client.get("/v1/admin/dlq?limit=2", headers=ADMIN)
    assert first.status_code == 200, first.text
    page = first.json()
    assert [item["id"] for item in page["items"]] == ids[:2]
    assert page["total"] == 3 and page["next_after"] == ids[1]
    item = page["items"][0]
    assert set(item) == {
        "id", "category", "message", "traceback", "deliveries", "first_sent_at", "parked_at",
        "execution_id", "node_id", "attempt", "handler", "stream", "consumer", "kind",
        "workflow",
    }  # fmt: skip
    assert item["kind"] == "task" and item["workflow"] is None
    assert item["category"] == "delivery" and item["deliveries"] == 5
    assert item["message"] == "delivered 5 times without an answer"
    assert item["traceback"].endswith("RuntimeError: worker hung")
    assert (item["execution_id"], item["node_id"], item["attempt"]) == ("exec-0", "n0", 2)
    assert item["handler"] == "python" and item["stream"] == api.names.tasks("python")
    assert item["parked_at"].endswith("Z") and item["first_sent_at"] < item["parked_at"]
    rest = (await api.client.get(f"/v1/admin/dlq?after={ids[1]}", headers=ADMIN)).json()
    assert [i["id"] for i in rest["items"]] == ids[2:] and rest["next_after"] is None

    shown = (await api.client.get(f"/v1/admin/dlq/{ids[0]}", headers=ADMIN)).json()
    assert {k: v for k, v in shown.items() if k != "payload"} == item
    task = json.loads(shown["payload"])["task"]
    assert task["execution_id"] == "exec-0" and task["inputs"] == {"user_id": 7}

    retried = await api.client.post(f"/v1/admin/dlq/{ids[0]}/retry", headers=ADMIN)
    assert retried.status_code == 202, retried.text
    action = retried.json()
    assert action["action"] == "retried" and action["stream"] == api.names.tasks("python")
    assert (action["execution_id"], action["node_id"], action["attempt"]) == ("exec-0", "n0", 2)
    entries = await api.redis.xrange(action["stream"], action["stream_entry_id"], "+")
    assert len(entries) == 1
    requeued = json.loads(entries[0][1][b"m"])
    assert requeued["deliveries"] == 1 and requeued["task"]["node_id"] == "n0"

    dropped = await api.client.delete(f"/v1/admin/dlq/{ids[1]}", headers=ADMIN)
    assert dropped.status_code == 202, dropped.text
    assert dropped.json()["action"] == "dropped" and dropped.json()["stream_entry_id"] is None
    assert "dead_letter" in dropped.json()["message"]
    completions = await api.redis.xrange(api.names.completions)
    execution_id, event = decode_event(loads(completions[-1][1][b"m"]))
    assert execution_id == "exec-1" and isinstance(event, NodeFailed)
    assert (event.node, event.attempt, event.error.category) == ("n1", 2, "dead_letter")

    # A copy of the parked task ran to its end after all (its guard is done): dropping the
    # letter fails nothing, and says so.
    await api.redis.set(api.names.guard("exec-2", "n2", 2, "r"), "d")
    ended = await api.client.delete(f"/v1/admin/dlq/{ids[2]}", headers=ADMIN)
    assert ended.status_code == 202, ended.text
    assert ended.json()["message"] == (
        "Dead letter dropped: attempt 2 of node n2 had already ended"
        " (a copy of the task ran to its end), so nothing changed"
    )
    assert await api.redis.xrange(api.names.completions) == completions

    left = (await api.client.get("/v1/admin/dlq", headers=ADMIN)).json()
    assert left["items"] == [] and left["total"] == 0
    for gone in ids:
        problem = assert_problem(await api.client.get(f"/v1/admin/dlq/{gone}", headers=ADMIN), 404)
        assert gone in problem["detail"]


async def test_dlq_needs_the_admin_role_and_known_ids(api: Api) -> None:
    entry_id = await park(api.redis, api.names, "exec-x")
    assert_problem(await api.client.get("/v1/admin/dlq"), 401)
    for who in (VIEWER, OPERATOR):
        problem = assert_problem(await api.client.get("/v1/admin/dlq", headers=who), 403)
        assert "admin" in problem["detail"]
        assert_problem(await api.client.post(f"/v1/admin/dlq/{entry_id}/retry", headers=who), 403)
        assert_problem(await api.client.delete(f"/v1/admin/dlq/{entry_id}", headers=who), 403)
    for unknown in ("1-0", "99999999999999-7", "not-an-id"):
        for response in (
            await api.client.get(f"/v1/admin/dlq/{unknown}", headers=ADMIN),
            await api.client.post(f"/v1/admin/dlq/{unknown}/retry", headers=ADMIN),
            await api.client.delete(f"/v1/admin/dlq/{unknown}", headers=ADMIN),
        ):
            assert f"no dead letter '{unknown}'" in assert_problem(response, 404)["detail"]
    assert_problem(await api.client.get("/v1/admin/dlq?after=nope", headers=ADMIN), 422)
    assert_problem(await api.client.get("/v1/admin/dlq?limit=0", headers=ADMIN), 422)
    assert await api.dlq.count() == 1  # nothing was touched


async def test_a_dead_letter_retried_and_dropped_at_once_is_acted_on_once(api: Api) -> None:
    letter = await park(api.redis, api.names, "exec-race")
    outcomes = await asyncio.gather(
        api.dlq.retry(letter), api.dlq.drop(letter), return_exceptions=True
    )
    errors = [o for o in outcomes if isinstance(o, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], OrchestrionNotFound), outcomes
    assert f"no dead letter '{letter}'" in str(errors[0])
    sent = await api.redis.xlen(api.names.tasks("python"))
    failed = await api.redis.xlen(api.names.completions)
    assert (sent, failed) in ((1, 0), (0, 1))  # sent again, or failed: never both
    assert await api.dlq.count() == 0


async def test_an_unreadable_dead_letter_can_be_dropped_not_retried(api: Api) -> None:
    stream = api.names.tasks("python")
    await ensure_group(api.redis, stream, WORKER_GROUP)
    entry = await api.redis.xadd(stream, {"m": '{"v": 99, "garbage": true}'})
    await api.redis.xreadgroup(WORKER_GROUP, "w", {stream: ">"}, count=1)
    letter_id = await api.dlq.park_raw(
        stream,
        entry,
        '{"v": 99, "garbage": true}',
        category="schema",
        message="message schema version 99 is newer than this process reads (1)",
        consumer="w",
    )
    shown = (await api.client.get(f"/v1/admin/dlq/{letter_id}", headers=ADMIN)).json()
    assert shown["category"] == "schema" and shown["consumer"] == "w"
    assert shown["execution_id"] is None and shown["attempt"] is None
    problem = assert_problem(
        await api.client.post(f"/v1/admin/dlq/{letter_id}/retry", headers=ADMIN), 409
    )
    assert "drop it instead" in problem["detail"]
    dropped = await api.client.delete(f"/v1/admin/dlq/{letter_id}", headers=ADMIN)
    assert dropped.status_code == 202
    assert dropped.json()["message"] == "Dead letter dropped (it named no node attempt to fail)"
    assert await api.dlq.count() == 0


async def test_embedded_mode_lists_dead_nodes_and_no_parked_tasks(tmp_path: Path) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'embedded.db'}",
        rate_limit_per_second=0,
        shutdown_grace=0,
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                listed = await client.get("/v1/admin/dlq")
                assert listed.status_code == 200, listed.text
                assert listed.json() == {"items": [], "next_after": None, "total": 0}
                for response in (
                    await client.get("/v1/admin/dlq/1-0"),
                    await client.post("/v1/admin/dlq/1-0/retry"),
                    await client.delete("/v1/admin/dlq/1-0"),
                ):
                    assert_problem(response, 404)
                health = (await client.get("/health")).json()
                assert set(health["checks"]) == {"database", "engine", "workers", "python_threads"}
                assert health["checks"]["workers"]["info"]["mode"] == "embedded"
                names = {name for name, _ in samples((await client.get("/metrics")).text)}
                assert "orchestrion_redis_up" not in names
                assert "orchestrion_dlq_size" not in names
    finally:
        await engine.stop(0)


async def test_a_dead_letter_retried_or_dropped_over_http_finishes_its_execution(
    postgres_url: str, redis_server: str, redis_prefix: str, settings: Settings
) -> None:
    names = StreamNames(redis_prefix)
    stream = names.tasks("noop")
    async with (
        # Inline attempts off: the noop attempts go to the task stream, for the ghost worker.
        scaleout_engine(
            postgres_url, redis_server, redis_prefix, workers=0, settings={"inline_attempts": False}
        ),
        serving(settings) as api,
    ):
        started = []
        for _ in range(2):
            submitted = await api.client.post("/v1/workflow", json=ONE_NODE, headers=OPERATOR)
            execution_id = submitted.json()["execution_id"]
            trigger = f"/v1/workflow/trigger/{execution_id}"
            assert (await api.client.post(trigger, headers=OPERATOR)).status_code == 202
            started.append(execution_id)
        # A worker that takes both tasks and dies on them; the reaper would park them.
        await ensure_group(api.redis, stream, WORKER_GROUP)
        taken: list[tuple[bytes, dict[bytes, bytes]]] = []
        deadline = time.monotonic() + 20
        while len(taken) < 2:
            assert time.monotonic() < deadline, "the orchestrator dispatched nothing"
            reply = await api.redis.xreadgroup(
                WORKER_GROUP, "ghost", {stream: ">"}, count=2, block=200
            )
            taken += reply[0][1] if reply else []
        for entry_id, fields in taken:
            raw = fields[b"m"].decode()
            await api.dlq.park(
                stream, entry_id, loads(raw), raw, category="delivery", message="delivered 5 times"
            )
        listed = (await api.client.get("/v1/admin/dlq", headers=ADMIN)).json()["items"]
        by_execution = {item["execution_id"]: item["id"] for item in listed}
        assert set(by_execution) == set(started)
        # Parked is not failed: the execution runs on, its attempt waits for an operator.
        waiting = await api.until(started[0], "RUNNING")
        assert waiting["nodes"]["a"]["state"] in ("QUEUED", "RUNNING")

        worker = Worker(redis_server, settings, default_registry(), worker_id="live")
        await worker.start()
        await Reaper(redis_server, settings, redis=api.redis).beat()  # one runs: /health ok
        try:
            retry = f"/v1/admin/dlq/{by_execution[started[0]]}/retry"
            assert (await api.client.post(retry, headers=ADMIN)).status_code == 202
            completed = await api.until(started[0], "COMPLETED", "FAILED")
            assert completed["status"] == "COMPLETED"
            assert completed["nodes"]["a"]["output"] == "done"

            drop = f"/v1/admin/dlq/{by_execution[started[1]]}"
            assert (await api.client.delete(drop, headers=ADMIN)).status_code == 202
            failed = await api.until(started[1], "COMPLETED", "FAILED")
            assert failed["status"] == "FAILED"
            assert failed["nodes"]["a"]["error"]["category"] == "dead_letter"

            health = await api.client.get("/health")
            assert health.status_code == 200, health.text
            checks = health.json()["checks"]
            assert checks["dlq"]["info"]["size"] == 0
            assert checks["workers"]["info"]["workers"][0]["id"] == "live"
        finally:
            await worker.stop(grace=0)


async def test_the_async_client_dead_letter_calls(api: Api) -> None:
    ids = [await park(api.redis, api.names, f"cl-{n}", node_id=f"n{n}") for n in range(3)]
    transport = httpx.ASGITransport(app=api.app)
    async with AsyncClient("http://api", api_key="adm-key", transport=transport) as client:
        page = await client.list_dead_letters(limit=2)
        assert [letter.id for letter in page.items] == ids[:2]
        assert page.total == 3 and page.next_after == ids[1]
        assert page.items[0].payload is None and page.items[0].task is None
        assert [letter.id async for letter in client.iter_dead_letters(page_size=1)] == ids
        letter = await client.get_dead_letter(ids[0])
        assert letter.task is not None and letter.task["node_id"] == "n0"
        assert letter.attempt == 2 and letter.parked_at and letter.first_sent_at
        assert letter.first_sent_at < letter.parked_at
        retried = await client.retry_dead_letter(ids[0])
        assert retried.action == "retried" and retried.stream_entry_id
        dropped = await client.drop_dead_letter(ids[1])
        assert dropped.action == "dropped" and dropped.node_id == "n1"
        with pytest.raises(NotFound, match="no dead letter"):
            await client.get_dead_letter(ids[0])
    async with AsyncClient("http://api", api_key="view-key", transport=transport) as viewer:
        with pytest.raises(Forbidden):
            await viewer.list_dead_letters()


# ------------------------------------------------------------------ health


async def test_health_reports_workers_and_orchestrators(
    postgres_url: str, redis_server: str, redis_prefix: str, api: Api
) -> None:
    alone = await api.client.get("/health")
    assert alone.status_code == 503
    body = alone.json()
    assert body["status"] == "degraded"
    checks = body["checks"]
    assert list(checks) == [
        "database", "engine", "redis", "workers", "orchestrators", "reaper", "queues", "dlq",
        "circuits", "python_threads",
    ]  # fmt: skip
    assert checks["database"]["status"] == checks["engine"]["status"] == "ok"
    assert checks["redis"]["status"] == "ok" and checks["redis"]["info"]["latency_ms"] >= 0
    assert checks["redis"]["info"]["prefix"] == redis_prefix
    assert checks["workers"]["status"] == "fail" and "no live worker" in checks["workers"]["detail"]
    assert checks["orchestrators"]["status"] == "fail"
    assert "no live orchestrator" in checks["orchestrators"]["detail"]
    assert checks["reaper"]["status"] == "fail" and checks["reaper"]["info"]["live"] == 0
    assert "no live reaper" in checks["reaper"]["detail"]
    assert checks["dlq"] == {"status": "ok", "detail": None, "info": {"size": 0}}

    settings = api.settings
    gpu = Worker(
        redis_server,
        settings,
        default_registry(),
        handlers=["python", "noop"],
        capabilities=["gpu"],
        concurrency=4,
        worker_id="gpu-1",
    )
    plain = Worker(
        redis_server, settings, default_registry(), handlers=["http"], worker_id="plain-1"
    )
    await park(api.redis, api.names, "exec-h")
    async with scaleout_engine(postgres_url, redis_server, redis_prefix, workers=0) as orchestrator:
        await gpu.start()
        await plain.start()
        stop_reaper = asyncio.Event()
        reaper = Reaper(redis_server, settings)
        reaping = asyncio.create_task(reaper.run_until(stop_reaper))
        await until(lambda: _swept(reaper), 10, "swept once")
        try:
            for path, headers in (("/health", {}), ("/v1/health", VIEWER)):
                response = await api.client.get(path, headers=headers)
                assert response.status_code == 200, response.text
                checks = response.json()["checks"]
                assert all(check["status"] == "ok" for check in checks.values())
                workers = checks["workers"]["info"]
                assert workers["mode"] == "scale-out" and workers["live"] == 2
                assert workers["concurrency"] == 4 + 16
                assert workers["by_handler"] == {"http": 1, "noop": 1, "python": 1}
                assert workers["by_capability"] == {"gpu": 1}
                first = workers["workers"][0]
                assert first["id"] == "gpu-1" and first["capabilities"] == ["gpu"]
                assert first["handlers"] == ["noop", "python"] and first["in_flight"] == 0
                assert first["last_seen_at"].endswith("Z")
                owners = [o["owner"] for o in checks["orchestrators"]["info"]["orchestrators"]]
                assert owners == [orchestrator.owner]
                assert checks["dlq"]["info"]["size"] == 1
                streams = checks["queues"]["info"]["streams"]
                assert streams["python"] == {"length": 0, "pending": 0}
                assert "noop+gpu" in streams  # the stream of a worker's capability set
                reapers = checks["reaper"]["info"]["reapers"]
                assert checks["reaper"]["info"]["live"] == 1 and reapers[0]["id"] == reaper.id
                assert reapers[0]["last_seen_at"].endswith("Z")
        finally:
            await gpu.stop(grace=0)
            await plain.stop(grace=0)
            stop_reaper.set()
            await reaping
    # Stopped processes delete their heartbeats: degraded again at once.
    after = (await api.client.get("/health")).json()["checks"]
    assert after["workers"]["info"]["live"] == 0 and after["orchestrators"]["info"]["live"] == 0
    assert after["reaper"]["status"] == "fail" and after["reaper"]["info"]["live"] == 0


async def _swept(reaper: Reaper) -> bool:
    return reaper.last_sweep_at is not None


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_health_metrics_and_dlq_when_redis_is_down(settings: Settings) -> None:
    # The engine keeps the good URL (it needs Redis to start); the API's own client gets a
    # port nobody listens on, as if Redis went away after the start.
    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{closed_port()}/0"})
    async with serving(down, engine_settings=settings) as api:
        started = time.monotonic()
        response = await api.client.get("/health")
        assert time.monotonic() - started < 5
        assert response.status_code == 503
        checks = response.json()["checks"]
        assert checks["database"]["status"] == "ok"
        assert checks["redis"]["status"] == "fail"
        assert checks["redis"]["detail"] == "Redis is unreachable (ConnectionError)"
        for name in ("workers", "orchestrators", "queues", "dlq", "circuits"):
            assert checks[name]["status"] == "fail"

        scraped = await api.client.get("/metrics")
        assert scraped.status_code == 200
        values = samples(scraped.text)
        assert values[("orchestrion_redis_up", ())] == 0
        assert not any(name == "orchestrion_dlq_size" for name, _ in values)
        assert ("orchestrion_queue_depth", ()) in values  # the rest is still there

        problem = assert_problem(await api.client.get("/v1/admin/dlq", headers=ADMIN), 503)
        assert "Redis is unavailable" in problem["detail"]


# ------------------------------------------------------------------ metrics


async def test_metrics_expose_the_dlq_streams_workers_and_circuits(api: Api) -> None:
    await park(api.redis, api.names, "exec-m")
    await api.redis.xadd(api.names.tasks("http"), {"m": "waiting"})  # a task nobody read yet
    breakers = CircuitBreakers(api.redis, api.settings.redis_prefix, threshold=1)
    await breakers.after("http", "api.example.com", ok=False)  # one failure opens it
    await breakers.after("llm", None, ok=True)
    # The fixture's 0.5 s heartbeat lives 2 s: on a loaded machine the loop this worker shares
    # with the API can stall that long, and the worker would drop out of the count.
    steady = api.settings.model_copy(update={"heartbeat_seconds": 10.0})
    worker = Worker(
        api.settings.redis_url or "",
        steady,
        default_registry(),
        handlers=["python"],
        worker_id="m-1",
    )
    await worker.start()
    try:
        values = samples((await api.client.get("/metrics")).text)
        assert values[("orchestrion_redis_up", ())] == 1
        assert values[("orchestrion_dlq_size", ())] == 1
        assert values[("orchestrion_task_stream_length", (("stream", "http"),))] == 1
        assert values[("orchestrion_task_stream_pending", (("stream", "http"),))] == 0
        assert values[("orchestrion_task_stream_length", (("stream", "python"),))] == 0
        assert values[("orchestrion_workers_live", ())] == 1
        assert values[("orchestrion_handler_workers_live", (("handler", "python"),))] == 1
        assert values[("orchestrion_orchestrators_live", ())] == 0
        circuit = ("orchestrion_circuit_state", (("handler", "http"), ("host", "api.example.com")))
        assert values[circuit] == 2
        assert values[("orchestrion_circuit_state", (("handler", "llm"), ("host", "-")))] == 0
        assert ("orchestrion_executions_live", ()) in values  # the embedded-mode metrics stay

        circuits = (await api.client.get("/health")).json()["checks"]["circuits"]
        assert circuits["status"] == "ok"  # an open circuit protects a downstream: not degraded
        assert circuits["info"]["total"] == 2 and circuits["info"]["open"] == 1
        (opened,) = circuits["info"]["circuits"]
        assert (opened["handler"], opened["host"], opened["state"]) == (
            "http",
            "api.example.com",
            "open",
        )
    finally:
        await worker.stop(grace=0)
    values = samples((await api.client.get("/metrics")).text)
    assert values[("orchestrion_workers_live", ())] == 0  # refreshed at every scrape


# ------------------------------------------------------------------ orchestrion dlq


def _park_sync(redis_url: str, prefix: str, count: int) -> list[str]:
    async def go() -> list[str]:
        redis = Redis.from_url(redis_url)
        try:
            names = StreamNames(prefix)
            return [await park(redis, names, f"cli-{n}", node_id=f"n{n}") for n in range(count)]
        finally:
            await redis.aclose()

    return asyncio.run(go())


def _ended(redis_url: str, guard: str) -> None:
    """Mark an attempt's guard done, as a worker does when it sends the attempt's outcome."""

    async def go() -> None:
        redis = Redis.from_url(redis_url)
        try:
            await redis.set(guard, "d")
        finally:
            await redis.aclose()

    asyncio.run(go())


def _dlq_size(redis_url: str, prefix: str) -> int:
    async def go() -> int:
        redis = Redis.from_url(redis_url)
        try:
            return await DeadLetters(redis, StreamNames(prefix)).count()
        finally:
            await redis.aclose()

    return asyncio.run(go())


def invoke(*args: str, env: dict[str, str] | None = None) -> Any:
    return CliRunner().invoke(cli, ["dlq", *args], env=env)


def test_cli_dlq_on_redis(
    redis_server: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRION_SERVER_URL", raising=False)
    ids = _park_sync(redis_server, redis_prefix, 3)
    where = ["--redis", redis_server, "--prefix", redis_prefix]

    listed = invoke("list", "--json", "--limit", "2", *where)
    assert listed.exit_code == 0, listed.output
    page = json.loads(listed.output)
    assert [item["id"] for item in page["items"]] == ids[:2]
    assert page["total"] == 3 and page["next_after"] == ids[1]
    item = page["items"][0]
    assert item["execution_id"] == "cli-0" and item["attempt"] == 2 and "payload" not in item
    assert isinstance(item["parked_at"], float) and item["category"] == "delivery"

    env = {"ORCHESTRION_REDIS_URL": redis_server, "ORCHESTRION_REDIS_PREFIX": redis_prefix}
    table = invoke("list", env=env)  # the environment instead of options
    assert table.exit_code == 0, table.output
    assert "dead letters: 3 of 3" in table.output and ids[0] in table.output

    shown = invoke("show", ids[0], "--json", *where)
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.output)
    assert json.loads(detail["payload"])["task"]["node_id"] == "n0"
    text = invoke("show", ids[0], *where)
    assert "RuntimeError: worker hung" in text.output and '"user_id": 7' in text.output

    retried = invoke("retry", ids[0], "--json", *where)
    assert retried.exit_code == 0, retried.output
    action = json.loads(retried.output)
    assert action["action"] == "retried" and action["stream_entry_id"]
    dropped = invoke("drop", ids[1], *where)
    assert dropped.exit_code == 0, dropped.output
    assert "attempt 2 of node n1 fails with category dead_letter" in dropped.output
    assert _dlq_size(redis_server, redis_prefix) == 1
    _ended(redis_server, StreamNames(redis_prefix).guard("cli-2", "n2", 2, "r"))
    ended = invoke("drop", ids[2], *where)
    assert ended.exit_code == 0, ended.output
    assert "attempt 2 of node n2 had already ended" in ended.output
    assert "nothing changed" in ended.output and "fails with" not in ended.output

    for args in (("show", ids[0]), ("retry", ids[1]), ("drop", "1-0"), ("show", "bogus")):
        failed = invoke(*args, *where)
        assert failed.exit_code == EXIT_NOT_FOUND, failed.output
        assert "no dead letter" in failed.output
    monkeypatch.delenv("ORCHESTRION_REDIS_URL", raising=False)
    unconfigured = invoke("show", ids[0])  # a parked task, and no Redis to look in
    assert unconfigured.exit_code == 2 and "ORCHESTRION_REDIS_URL" in unconfigured.output
    unreachable = invoke("list", "--redis", f"redis://127.0.0.1:{closed_port()}/0")
    assert unreachable.exit_code == 3 and "cannot use Redis" in unreachable.output


@contextlib.contextmanager
def http_server(settings: Settings) -> Iterator[str]:
    """``create_app`` under a real uvicorn on a free port, in a thread of its own."""
    port = closed_port()
    config = uvicorn.Config(
        create_app(settings=settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def test_cli_dlq_through_a_server(
    settings: Settings, redis_server: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRION_REDIS_URL", raising=False)
    ids = _park_sync(redis_server, redis_prefix, 2)
    with http_server(settings) as url:
        server = ["--server", url, "--api-key", "adm-key"]
        listed = invoke("list", "--json", *server)
        assert listed.exit_code == 0, listed.output
        page = json.loads(listed.output)
        assert [item["id"] for item in page["items"]] == ids and page["next_after"] is None
        shown = json.loads(invoke("show", ids[0], "--json", *server).output)
        assert json.loads(shown["payload"])["task"]["execution_id"] == "cli-0"

        retried = invoke("retry", ids[0], *server)
        assert retried.exit_code == 0 and f"retried {ids[0]}" in retried.output
        dropped = invoke("drop", ids[1], "--json", *server)
        assert dropped.exit_code == 0, dropped.output
        assert json.loads(dropped.output)["node_id"] == "n1"
        empty = invoke("list", *server)
        assert empty.exit_code == 0 and "the dead letter queue is empty" in empty.output

        refused = invoke("list", "--server", url, "--api-key", "view-key")
        assert refused.exit_code == EXIT_DENIED and "admin" in refused.output
        unknown = invoke("show", ids[0], *server)
        assert unknown.exit_code == EXIT_NOT_FOUND and "no dead letter" in unknown.output
    gone = invoke("list", "--server", url, "--api-key", "adm-key")
    assert gone.exit_code == 3, gone.output


# ------------------------------------------------------------------ event streams


async def test_event_streams_wake_on_orchestrator_commits(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    """The API commits nothing in scale-out mode: the orchestrators announce their commits,
    so a stream follows a run as it happens, not at the next poll of the journal."""
    settings = api_settings(
        postgres_url, redis_server, redis_prefix, sse_poll=120, sse_keepalive=120
    )
    chain = {
        "name": "followed",
        "dag": {
            "nodes": [
                {
                    "id": f"n{i}",
                    "handler": "delay",
                    "dependencies": [f"n{i - 1}"] if i else [],
                    "config": {"seconds": 0.2},
                }
                for i in range(3)
            ]
        },
    }
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix, workers=1),
        serving(settings) as api,
    ):
        submitted = await api.client.post("/v1/workflow", json=chain, headers=OPERATOR)
        execution_id = submitted.json()["execution_id"]
        trigger = f"/v1/workflow/trigger/{execution_id}"
        assert (await api.client.post(trigger, headers=OPERATOR)).status_code == 202
        url = f"/v1/workflows/{execution_id}/events/stream"
        types: list[str] = []
        async with asyncio.timeout(15):  # far below sse_poll: only wake-ups can end it
            async with api.client.stream("GET", url, headers=VIEWER) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        types.append(line.removeprefix("event: "))
        assert types[-1] == "execution.completed"
        assert types.count("node.completed") == 3


async def test_a_running_map_shows_its_progress_in_scale_out(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    """The map runs in a worker, the API drives nothing: the counts cross Redis."""
    settings = api_settings(postgres_url, redis_server, redis_prefix)
    mapped = {
        "name": "mapped",
        "dag": {
            "nodes": [
                {
                    "id": "each",
                    "handler": "map",
                    "config": {
                        "items": [1, 2, 3],
                        "handler": "noop",
                        "config": {"sleep": 0.5},
                        "concurrency": 1,
                    },
                }
            ]
        },
    }
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix, workers=1),
        serving(settings) as api,
    ):
        submitted = await api.client.post("/v1/workflow", json=mapped, headers=OPERATOR)
        execution_id = submitted.json()["execution_id"]
        trigger = f"/v1/workflow/trigger/{execution_id}"
        assert (await api.client.post(trigger, headers=OPERATOR)).status_code == 202
        seen: list[dict[str, int]] = []
        async with asyncio.timeout(20):
            while True:
                response = await api.client.get(f"/v1/workflows/{execution_id}", headers=VIEWER)
                detail = response.json()
                if detail["status"] == "COMPLETED":
                    break
                progress = detail["nodes"]["each"]["progress"]
                if progress is not None:
                    seen.append(progress)
                await asyncio.sleep(0.05)
        assert any(p["total"] == 3 and p["done"] < 3 for p in seen), seen
        assert detail["nodes"]["each"]["progress"] is None  # an ended run shows none


# ------------------------------------------------------------------ nodes that failed for good

FIXED: set[str] = set()


@function("dlq_until_fixed", replace=True)
def dlq_until_fixed(ctx: NodeContext) -> str:
    if ctx.execution_id not in FIXED:
        raise RuntimeError("the downstream service is still broken")
    return "fixed"


EXHAUSTING = {
    "name": "exhausting",
    "dag": {
        "nodes": [
            {"id": "first", "handler": "noop"},
            {
                "id": "flaky",
                "handler": "python",
                "dependencies": ["first"],
                "retry": {"max_attempts": 2, "initial_delay": 0.01, "retry_on": ["all"]},
                "config": {"function": "dlq_until_fixed"},
            },
        ]
    },
}


async def test_nodes_that_exhaust_their_retries_are_dead_letters_on_scale_out(
    postgres_url: str, redis_server: str, redis_prefix: str, settings: Settings
) -> None:
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix, workers=1),
        serving(settings) as api,
    ):
        failed = []
        for _ in range(2):
            submitted = await api.client.post("/v1/workflow", json=EXHAUSTING, headers=OPERATOR)
            execution_id = submitted.json()["execution_id"]
            trigger = f"/v1/workflow/trigger/{execution_id}"
            assert (await api.client.post(trigger, headers=OPERATOR)).status_code == 202
            body = await api.until(execution_id, "FAILED", "COMPLETED")
            assert body["status"] == "FAILED" and body["nodes"]["flaky"]["attempt"] == 2
            failed.append(execution_id)
        # A stream no worker reads (the live worker would take a python task first).
        parked = await park(api.redis, api.names, "poisoned", handler="unserved")

        # Both kinds: the parked task first, then the nodes by when they failed; pages go on
        # from one kind to the other.
        first = (await api.client.get("/v1/admin/dlq?limit=1", headers=ADMIN)).json()
        assert [i["id"] for i in first["items"]] == [parked] and first["total"] == 3
        assert first["items"][0]["kind"] == "task" and first["next_after"] == "node-0"
        rest = await api.client.get("/v1/admin/dlq?after=node-0", headers=ADMIN)
        nodes = rest.json()["items"]
        assert [i["id"] for i in nodes] == [f"{e}.flaky" for e in failed]
        assert rest.json()["next_after"] is None
        node = nodes[0]
        assert node["kind"] == "node" and node["workflow"] == "exhausting"
        assert node["attempt"] == 2 and "still broken" in node["message"]
        assert node["execution_id"] == failed[0] and node["node_id"] == "flaky"
        only = await api.client.get("/v1/admin/dlq?workflow=exhausting", headers=ADMIN)
        assert only.json()["total"] == 2  # a filter lists nodes only
        viewer = await api.client.get("/v1/admin/dlq", headers=VIEWER)
        assert viewer.status_code == 403

        FIXED.add(failed[0])
        retry = await api.client.post(f"/v1/admin/dlq/{failed[0]}.flaky/retry", headers=ADMIN)
        assert retry.status_code == 202, retry.text
        assert retry.json()["action"] == "retried"
        # The orchestrator reruns it (forwarded): the node's next attempt completes it.
        done = await api.until(failed[0], "COMPLETED")
        assert done["nodes"]["flaky"]["attempt"] == 3

        dropped = await api.client.delete(f"/v1/admin/dlq/{failed[1]}.flaky", headers=ADMIN)
        assert dropped.status_code == 202 and dropped.json()["action"] == "dropped"
        left = (await api.client.get("/v1/admin/dlq", headers=ADMIN)).json()
        assert [i["id"] for i in left["items"]] == [parked] and left["total"] == 1
        gone = await api.client.get(f"/v1/admin/dlq/{failed[1]}.flaky", headers=ADMIN)
        assert_problem(gone, 404)
        assert (await api.until(failed[1], "FAILED"))["status"] == "FAILED"
