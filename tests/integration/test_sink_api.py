"""``/v1/admin/sinks`` in process through ``AsyncClient``: what a failing webhook sink owes,
retried and dropped by an admin, refused to an operator, unknown ids."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest

from orchestrion.api.app import create_app
from orchestrion.client import AsyncClient, Forbidden, NotFound
from orchestrion.engine.facade import Engine
from orchestrion.settings import Settings
from sink_helpers import TWO_NODES, Receiver

KEYS = "admin-key:admin,op-key:operator"


@pytest.fixture
async def served(
    tmp_path: Path,
) -> AsyncIterator[tuple[Engine, AsyncClient, AsyncClient, Receiver]]:
    receiver = Receiver(statuses=[500, 500])
    hook = {"name": "ops", "type": "webhook", "url": receiver.url, "events": ["execution.*"]}
    sinks = {
        "sinks": [hook],
        "delivery": {"attempts": 1, "interval": 0.05, "initial_backoff": 0.05},
    }
    try:
        async with AsyncExitStack() as stack:
            config = Settings(
                database_url=f"sqlite:///{tmp_path / 'api.db'}",
                api_keys=KEYS,
                rate_limit_per_second=0,
                rate_limit_burst=0,
                sinks=json.dumps(sinks),
            )
            engine = await stack.enter_async_context(Engine(settings=config))
            app = create_app(engine=engine, settings=config)
            await stack.enter_async_context(app.router.lifespan_context(app))
            transport = httpx.ASGITransport(app=app)
            admin, operator = [
                await stack.enter_async_context(
                    AsyncClient("http://orchestrion.test", api_key=key, transport=transport)
                )
                for key in ("admin-key", "op-key")
            ]
            yield engine, admin, operator, receiver
    finally:
        receiver.close()


async def test_an_admin_sees_retries_and_drops_what_a_sink_owes(
    served: tuple[Engine, AsyncClient, AsyncClient, Receiver],
) -> None:
    engine, admin, operator, receiver = served
    record = await engine.start_execution(TWO_NODES)
    await engine.wait(record.id, timeout=10)
    deadline = time.monotonic() + 10
    while len(await admin.sink_deliveries(status="dead")) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    [sink] = await admin.sinks()
    assert (sink.name, sink.owed, sink.dead, sink.dead_lettered) == ("ops", 0, 2, 2)
    assert sink.failed == 2 and sink.published == 0
    first, second = await admin.sink_deliveries(status="dead", sink="ops")
    assert first.event["type"] == "execution.started" and first.error == "HTTP 500 from the webhook"
    retried = await admin.sink_delivery_action(first.id, "retry")
    assert (retried.status, retried.attempts) == ("retry", 0)
    while not any(e["id"] == first.event_id for e in receiver.events()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    dropped = await admin.sink_delivery_action(second.id, "drop")
    assert dropped.id == second.id
    assert await admin.sink_deliveries() == []
    with pytest.raises(NotFound):
        await admin.sink_delivery_action(second.id, "retry")
    with pytest.raises(Forbidden):
        await operator.sinks()
    with pytest.raises(Forbidden):
        await operator.sink_delivery_action(first.id, "drop")
