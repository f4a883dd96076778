"""One machine per execution, however many paths load a dropped execution at once.

After a failed commit the engine drops the executions of the turn and reloads them; until
then, an event routed from a stream (``adopt``), the heartbeat's resume of unfinished
executions, or an operator's request may load the same execution too. Each must find the
machine another installed while it loaded, not install a second one from an older snapshot:
two machines would each recover the execution (two dispatches of its running attempts) and
the older one would overwrite what the newer committed.
"""

from __future__ import annotations

import asyncio

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.engine.timers import disarm

FLOW = {
    "name": "waits-for-a-person",
    "dag": {
        "nodes": [
            {"id": "ask", "handler": "approval"},
            {"id": "after", "handler": "noop", "dependencies": ["ask"], "config": {"value": 1}},
        ]
    },
}


async def _dropped(engine: Engine) -> str:
    """An execution waiting on approval, then dropped as a failed commit drops it."""
    record = await engine.start_execution(await engine.submit(FLOW))
    for _ in range(200):
        if (await engine.store.get_execution(record.id)).status is ExecutionStatus.WAITING:
            break
        await asyncio.sleep(0.01)
    live = engine._loop.live.pop(record.id)
    disarm(live)
    return record.id


async def _recoveries(engine: Engine, execution_id: str) -> int:
    events = await engine.store.list_events(execution_id, types=["execution.recovered"])
    return len(events)


async def test_two_events_routed_at_once_adopt_a_dropped_execution_once(postgres_url: str) -> None:
    # PostgreSQL: its awaits suspend, so the two loads really interleave (SQLite's do not).
    async with Engine(postgres_url) as engine:
        execution_id = await _dropped(engine)
        record = await engine.store.get_execution(execution_id)
        assert await asyncio.gather(engine.adopt(record), engine.adopt(record)) == [True, True]
        assert await _recoveries(engine, execution_id) == 1
        machine = engine.live_machine(execution_id)
        await engine.decide(execution_id, "ask", approved=True, by="ops")
        result = await engine.wait(execution_id, timeout=10)
        assert engine.live_machine(execution_id) in (machine, None)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.outputs["after"] == 1


async def test_a_reload_and_an_adopt_at_once_leave_one_machine(postgres_url: str) -> None:
    async with Engine(postgres_url) as engine:
        execution_id = await _dropped(engine)
        record = await engine.store.get_execution(execution_id)
        await asyncio.gather(engine._recovery.reload(execution_id), engine.adopt(record))
        assert await _recoveries(engine, execution_id) == 1
        await engine.decide(execution_id, "ask", approved=True, by="ops")
        result = await engine.wait(execution_id, timeout=10)
    assert result.status is ExecutionStatus.COMPLETED, result.error
