"""An engine stops within its grace and a little more even when its turns go on posting
(a cascade of endings over many executions can post for minutes): what is left uncommitted
is what a crash would leave, and the next start recovers it. Whoever waited for a turn that
will not come is told, not left waiting."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from orchestrion.core.events import NodeLogged
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import OrchestrionError

SLOW = {
    "name": "slow",
    "dag": {"nodes": [{"id": "wait", "handler": "delay", "config": {"seconds": 0.5}}]},
}


async def test_stop_ends_while_turns_keep_posting(tmp_path: Path) -> None:
    db = tmp_path / "stop.db"
    engine = Engine(f"sqlite:///{db}")
    await engine.start()
    record = await engine.start_execution(SLOW, {})
    loop = engine._loop

    def post_again(execution_id: str, _records: object) -> None:
        # Every commit posts one more turn's worth: the inbox never empties by itself.
        if execution_id == record.id:
            loop.post(execution_id, NodeLogged("wait", 1, time.time()))

    engine.add_listener(post_again)
    loop.post(record.id, NodeLogged("wait", 1, time.time()))
    await asyncio.sleep(0.2)
    waiter = asyncio.ensure_future(loop.post_and_wait(record.id, NodeLogged("wait", 1, 0.0)))
    started = time.monotonic()
    await asyncio.wait_for(engine.stop(0.5), 15)
    assert time.monotonic() - started < 8
    if not waiter.done() or waiter.exception() is not None:
        with pytest.raises(OrchestrionError):
            await asyncio.wait_for(waiter, 1)

    async with Engine(f"sqlite:///{db}") as again:  # recovered, and run to its end
        result = await again.wait(record.id, timeout=15)
        assert result.status is ExecutionStatus.COMPLETED
