"""After Redis loses its data, an orchestrator dispatches again what it has in flight, and
that dispatch may only go out later (Redis refuses it for a while). An attempt whose result
arrived meanwhile must not be sent then: a completed node never runs again.

The Redis here is a redis-server of the test's own (its data is flushed and its users
changed): the orchestrator connects as a user whose dispatch script Redis refuses for a
while, the worker as the default user.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis.asyncio import Redis

from orchestrion.cluster.worker import Worker
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.handlers.registry import default_registry
from scaleout import scaleout_settings, until

pytestmark = pytest.mark.slow

RUNS: Counter[str] = Counter()
STARTED = asyncio.Event()


@function("redispatch_slow", replace=True)
async def redispatch_slow(ctx: NodeContext, seconds: float) -> str:
    RUNS[ctx.node_id] += 1
    STARTED.set()
    await asyncio.sleep(seconds)
    return "done"


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no redis-server binary")
        pytest.skip("no redis-server binary")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
    proc = subprocess.Popen(
        [binary, *args, "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.timeout(120)
async def test_a_late_redispatch_does_not_run_a_completed_node(
    own_redis: str, postgres_url: str
) -> None:
    RUNS.clear()
    STARTED.clear()
    admin = Redis.from_url(f"redis://{own_redis}/0")
    await admin.execute_command("ACL", "SETUSER", "orch", "on", ">pw", "~*", "&*", "+@all")
    orchestrator_url = f"redis://orch:pw@{own_redis}/0"
    worker_url = f"redis://{own_redis}/0"
    settings = scaleout_settings(postgres_url, orchestrator_url, "late")
    registry = default_registry()
    worker = Worker(worker_url, settings, registry, concurrency=8, worker_id="w0")
    await worker.start()
    try:
        async with Engine(settings=settings, registry=registry) as engine:
            definition = await engine.submit(
                {
                    "name": "late-redispatch",
                    "dag": {
                        "nodes": [
                            {
                                "id": "slow",
                                "handler": "python",
                                "config": {
                                    "function": "redispatch_slow",
                                    "params": {"seconds": 1.5},
                                },
                            }
                        ]
                    },
                }
            )
            record = await engine.start_execution(definition, {})
            await asyncio.wait_for(STARTED.wait(), 30)
            # Redis refuses the orchestrator's dispatch script for now, then loses its data
            # while the worker holds the attempt: the re-dispatch is left to send later.
            await admin.execute_command("ACL", "SETUSER", "orch", "-evalsha", "-eval")
            await admin.flushall()

            async def completed() -> bool:
                found = await engine.store.get_execution(record.id)
                return found.status is ExecutionStatus.COMPLETED

            await until(completed, 30, "completed")
            # Redis takes the dispatch again: the late re-dispatch must find nothing to send.
            await admin.execute_command("ACL", "SETUSER", "orch", "+@all")
            await asyncio.sleep(4 * settings.heartbeat_seconds + 3.0)
            assert RUNS["slow"] == 1, RUNS
    finally:
        await worker.stop(grace=0)
        await admin.aclose()


@function("redispatch_undo", replace=True)
async def redispatch_undo(ctx: NodeContext) -> str:
    RUNS[f"undo-{ctx.node_id}"] += 1
    return "undone"


@function("redispatch_broken", replace=True, inline=True)
def redispatch_broken() -> None:
    raise ValueError("broken")


@pytest.mark.timeout(120)
async def test_a_compensation_lost_with_redis_data_is_sent_again_once(
    own_redis: str, postgres_url: str
) -> None:
    RUNS.clear()
    admin = Redis.from_url(f"redis://{own_redis}/0")
    settings = scaleout_settings(postgres_url, f"redis://{own_redis}/0", "lostcomp")
    registry = default_registry()
    worker = Worker(f"redis://{own_redis}/0", settings, registry, concurrency=8, worker_id="w0")
    try:
        async with Engine(settings=settings, registry=registry) as engine:
            definition = await engine.submit(
                {
                    "name": "lost-compensation",
                    "on_failure": "compensate",
                    "dag": {
                        "nodes": [
                            {"id": "a", "handler": "noop", "compensate": "redispatch_undo"},
                            {
                                "id": "c",
                                "handler": "python",
                                "dependencies": ["a"],
                                "retry": {"max_attempts": 1},
                                "config": {"function": "redispatch_broken"},
                            },
                        ]
                    },
                }
            )
            record = await engine.start_execution(definition, {})

            async def sent() -> bool:  # no worker yet: the compensation waits in its stream
                return bool(await admin.exists("lostcomp:tasks:python"))

            await until(sent, 20, "a's compensation sent")
            await admin.flushall()  # Redis restarted without its data: the task is gone
            await until(sent, 20, "a's compensation sent again")
            await worker.start()

            async def failed() -> bool:
                found = await engine.store.get_execution(record.id)
                return found.status is ExecutionStatus.FAILED

            await until(failed, 30, "the execution failed, a undone")
            nodes = {r.node_id: r for r in await engine.store.get_node_runs(record.id)}
            # Sent again on every later look too, the guard keeps it from running twice.
            await asyncio.sleep(4 * settings.heartbeat_seconds + 1.0)
        assert nodes["a"].compensation == "done"
        assert RUNS["undo-a"] == 1, RUNS
    finally:
        if worker._redis is not None:  # started
            await worker.stop(grace=0)
        await admin.aclose()
