"""Python functions that never return, through the service on a real SQLite file.

Python cannot stop a thread: a cancelled or timed-out attempt ends, its function runs on.
Such functions run in a pool of their own (``python_threads``), so they cannot hold back the
definition checks the service runs in threads; each is counted while it runs on, and
``/health`` and ``/metrics`` say so until it returns.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.api import create_app
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.handlers import function_threads
from orchestrion.handlers.python import function_registry
from orchestrion.settings import load_settings

RELEASE = threading.Event()


def forever(msg: str = "") -> str:
    RELEASE.wait(60)  # a call blocked on I/O that never answers
    return msg


def quick(msg: str = "") -> str:
    return msg


@pytest.fixture
def functions() -> Iterator[None]:
    RELEASE.clear()
    function_registry.register("t_forever", forever, replace=True)
    function_registry.register("t_quick", quick, replace=True)
    yield
    RELEASE.set()
    function_registry.unregister("t_forever")
    function_registry.unregister("t_quick")


class Service:
    def __init__(self, client: httpx.AsyncClient, engine: Engine) -> None:
        self.client = client
        self.engine = engine


@pytest.fixture
async def service(tmp_path: Path, functions: None) -> AsyncIterator[Service]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'o.db'}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        python_threads=2,
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Service(client, engine)
    finally:
        RELEASE.set()
        await engine.stop(0)
        for _ in range(100):  # the released functions return
            if not function_threads.busy():
                break
            await asyncio.sleep(0.02)


def _one(function: str, **node: Any) -> dict[str, Any]:
    spec = {"id": "f", "handler": "python", "config": {"function": function}} | node
    return {"name": f"one-{function}", "dag": {"nodes": [spec]}}


async def _running(engine: Engine, execution_id: str) -> None:
    for _ in range(500):
        machine = engine.live_machine(execution_id)
        if machine is not None and machine.nodes[0].state is NodeState.RUNNING:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the function of {execution_id} never ran")


async def _health(service: Service) -> tuple[int, dict[str, Any]]:
    response = await service.client.get("/health")
    return response.status_code, response.json()["checks"]["python_threads"]


async def test_cancelled_and_timed_out_functions_are_counted_and_hold_back_nothing_else(
    service: Service,
) -> None:
    engine = service.engine
    for _ in range(250):  # functions an earlier test left behind end
        if not function_threads.busy():
            break
        await asyncio.sleep(0.02)
    base = function_threads.stuck()  # what is still left: counted on top
    if not base:
        assert await _health(service) == (200, {"status": "ok", "detail": None, "info": {
            "size": 2, "busy": 0, "stuck": 0}})  # fmt: skip
    # One cancelled while it runs, one whose node timeout runs out.
    cancelled = await engine.start_execution(await engine.submit(_one("t_forever")))
    await _running(engine, cancelled.id)
    await engine.cancel(cancelled.id)
    once = {"max_attempts": 1}  # a timeout is retried by default: one stuck call here
    timed_out = await engine.run(_one("t_forever", timeout=0.3, retry=once), timeout=30)
    assert timed_out.status is ExecutionStatus.FAILED
    error = timed_out.nodes["f"].error
    assert error is not None and error["category"] == "timeout"
    assert (await engine.wait(cancelled.id, timeout=10)).status is ExecutionStatus.CANCELLED

    status, check = await _health(service)
    assert status == 503
    assert check["status"] == "fail"
    assert check["info"] == {"size": 2, "busy": 2 + base, "stuck": 2 + base}
    assert f"{2 + base} python function(s) still running" in check["detail"]
    metrics = (await service.client.get("/metrics")).text
    assert f"orchestrion_python_threads_stuck {2 + base}.0" in metrics

    # Both threads of the pool are held, yet a large definition is still checked and taken:
    # its checks run in the service's own threads.
    many = {
        "name": "many",
        "dag": {
            "nodes": [
                {"id": f"n{i}", "handler": "noop", "config": {"value": f"{{{{ {i} + 1 }}}}"}}
                for i in range(300)
            ]
        },
    }
    async with asyncio.timeout(20):
        response = await service.client.post("/v1/workflow", json=many)
    assert response.status_code in (200, 201), response.text

    # Released, the functions return: their threads are back, and /health is ok again.
    RELEASE.set()
    for _ in range(200):
        if function_threads.stuck() <= base:
            break
        await asyncio.sleep(0.02)
    assert function_threads.stuck() <= base
    if not function_threads.stuck():
        assert (await _health(service))[0] == 200
    quick_run = await engine.run(
        _one("t_quick") | {"dag": {"nodes": [{"id": "f", "handler": "python", "config": {
            "function": "t_quick", "params": {"msg": "hi"}}}]}},
        timeout=10,
    )  # fmt: skip
    assert quick_run.status is ExecutionStatus.COMPLETED
    assert quick_run.nodes["f"].output == "hi"
