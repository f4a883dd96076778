"""An engine that takes an execution over drives it as the store says after its claim.

Taking over is two steps: find an execution nobody alive drives (a listing, a routed event,
an operator's verb), then claim it. Between the two its old owner may commit more: typically
the start it was beginning when it stopped renewing its lease. The new owner must rebuild the
machine from what is stored once the claim is its own, never from the record it found
before: a start read as still pending would be begun again, and its first node would run
again under a new attempt (a new idempotency key) beside the one already dispatched.

The interleaving is made exact by handing the taking-over engine the record as it was listed
before the start was committed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.engine.timers import disarm
from orchestrion.settings import load_settings
from orchestrion.store.base import ExecutionRecord

FLOW = {
    "name": "asks-first",
    "dag": {
        "nodes": [
            {"id": "ask", "handler": "approval"},
            {"id": "after", "handler": "noop", "dependencies": ["ask"], "config": {"value": 1}},
        ]
    },
}


def _engine(url: str, lease: float) -> Engine:
    # Not resuming on its own: each test takes the execution over by the path it tests.
    return Engine(settings=load_settings(database_url=url, lease_seconds=lease), resume=False)


async def _started_then_abandoned(url: str) -> tuple[str, ExecutionRecord]:
    """An execution whose owner committed its start after another engine had listed it as
    pending, then stopped renewing its lease (as a process that hangs or dies does)."""
    async with _engine(url, lease=0.5) as first:
        definition = await first.submit(FLOW)
        created, _ = await first.create_execution(definition.id)
        listed = await first.store.get_execution(created.id)  # what a sweep saw: pending
        await first.trigger(created.id)
        for _ in range(200):
            if (await first.store.get_execution(created.id)).status is ExecutionStatus.WAITING:
                break
            await asyncio.sleep(0.01)
        disarm(first._loop.live.pop(created.id))  # no more lease renewals for it
        first._loop.live.clear()
        await asyncio.sleep(0.6)  # the lease runs out
        # Closing releases only what is still live; this execution is left as a dead
        # owner leaves it.
    return created.id, listed


async def _waiting_here(engine: Engine, execution_id: str) -> None:
    """Until this engine drives the execution and it waits for its approval again."""
    for _ in range(500):
        machine = engine.live_machine(execution_id)
        if machine is not None and machine.status is ExecutionStatus.WAITING:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"execution {execution_id} is not waiting here")


async def _attempts_of(engine: Engine, execution_id: str, node: str) -> set[int]:
    events = await engine.store.list_events(execution_id, types=["node.queued"])
    return {e.attempt for e in events if e.node_id == node}


async def test_a_sweep_resumes_what_was_committed_after_its_listing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    execution_id, listed = await _started_then_abandoned(url)
    assert listed.status is ExecutionStatus.PENDING
    async with _engine(url, lease=30) as second:
        store = second.store

        async def as_listed() -> list[ExecutionRecord]:
            return [listed]

        store.unfinished_executions = as_listed  # type: ignore[method-assign]
        await second._recovery.resume_unfinished()
        await _waiting_here(second, execution_id)
        assert await _attempts_of(second, execution_id, "ask") == {1}
        await second.decide(execution_id, "ask", approved=True, by="ops")
        result = await second.wait(execution_id, timeout=10)
        assert await _attempts_of(second, execution_id, "ask") == {1}
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.outputs["after"] == 1


async def test_an_adopted_execution_is_loaded_as_committed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    execution_id, listed = await _started_then_abandoned(url)
    async with _engine(url, lease=30) as second:
        assert await second.adopt(listed)
        machine = second.live_machine(execution_id)
        assert machine is not None and machine.status is ExecutionStatus.WAITING
        assert await _attempts_of(second, execution_id, "ask") == {1}
