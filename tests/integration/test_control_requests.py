"""Two engines on one database, as two processes are: the one that does not run an execution
asks the one that does, through the journal, and that one carries the verb out. Every store
(memory shared by both, SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import InvalidTransition
from orchestrion.store.memory import MemoryStore

WAITS = {
    "name": "waits",
    "dag": {
        "nodes": [
            {"id": "nap", "handler": "delay", "config": {"seconds": 60}},
            {"id": "ask", "handler": "approval", "config": {"message": "ok?"}},
            {"id": "after", "handler": "noop", "dependencies": ["nap", "ask"]},
        ]
    },
}

Pair = Callable[[], Engine]


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def engines(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Pair]:
    """A factory of engines that share one database."""
    shared = MemoryStore() if request.param == "memory" else None
    url = {
        "memory": None,
        "sqlite": f"sqlite:///{tmp_path / 'shared.db'}",
        "postgres": request.getfixturevalue("postgres_url") if request.param == "postgres" else "",
    }[request.param]

    def make() -> Engine:
        return Engine(url, store=shared, resume=False) if shared else Engine(url, resume=False)

    yield make


async def _until(check: Callable[[], Any], timeout: float = 20.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.05)


async def test_cancel_pause_resume_and_decide_from_another_engine(engines: Pair) -> None:
    async with engines() as owner, engines() as other:
        record = await owner.start_execution(WAITS)
        await _until(lambda: _waiting(owner, record.id))
        with pytest.raises(InvalidTransition, match="not paused"):
            await other.resume(record.id)
        await other.pause(record.id)
        assert (await other.store.get_execution(record.id)).status is ExecutionStatus.PAUSED
        assert owner.is_live(record.id) and not other.is_live(record.id)
        await other.resume(record.id)
        assert (await other.store.get_execution(record.id)).status is not ExecutionStatus.PAUSED
        await other.decide(record.id, "ask", approved=True, by="ada")
        runs = {run.node_id: run for run in await other.store.get_node_runs(record.id)}
        assert runs["ask"].state is NodeState.COMPLETED
        assert runs["ask"].output["decided_by"] == "ada"
        await other.cancel(record.id)
        assert (await other.store.get_execution(record.id)).status is ExecutionStatus.CANCELLED
        assert (await owner.wait(record.id, timeout=10)).status is ExecutionStatus.CANCELLED
        with pytest.raises(InvalidTransition):
            await other.cancel(record.id)


async def test_a_request_made_before_the_owner_started_is_not_replayed(engines: Pair) -> None:
    async with engines() as first:
        record = await first.start_execution(WAITS)
        await _until(lambda: _waiting(first, record.id))
    # Recorded while nobody drove the execution (by an engine that does not own it: the
    # owner itself would have carried it out while it stopped).
    async with engines() as bystander:
        await bystander.store.request_control(
            record.id, "old-request", {"verb": "cancel", "reason": "long ago"}, 0.0
        )
    async with engines() as second:  # takes the released execution over
        assert await second.adopt(await second.store.get_execution(record.id))
        await asyncio.sleep(1.0)  # a few polls
        assert (await second.store.get_execution(record.id)).status is ExecutionStatus.WAITING


async def _waiting(engine: Engine, execution_id: str) -> bool:
    record = await engine.store.get_execution(execution_id)
    return record.status is ExecutionStatus.WAITING


CHILD = {
    "name": "napper",
    "dag": {"nodes": [{"id": "nap", "handler": "delay", "config": {"seconds": 60}}]},
}
PARENT = {
    "name": "calls-napper",
    "dag": {"nodes": [{"id": "sub", "handler": "workflow", "config": {"workflow": "napper"}}]},
}


@pytest.mark.parametrize("settled", [False, True], ids=["at-once", "after-recovery"])
async def test_cancel_of_a_parent_cancels_a_child_another_engine_drives(
    engines: Pair, settled: bool
) -> None:
    async with engines() as first:
        await first.submit(CHILD)
        parent = await first.start_execution(PARENT)
        await _until(lambda: _waiting(first, parent.id))
        await _until(lambda: _child_of(first, parent.id))
        child = await _child_of(first, parent.id)
        assert child is not None
    # Given back at stop; now one engine drives the child, another the parent.
    async with engines() as child_owner, engines() as parent_owner:
        assert await child_owner.adopt(await child_owner.store.get_execution(child))
        assert await parent_owner.adopt(await parent_owner.store.get_execution(parent.id))
        if settled:  # the parent's recovery re-ran its node, which found the child again
            await asyncio.sleep(0.5)
        await parent_owner.cancel(parent.id)
        assert (await child_owner.wait(child, timeout=10)).status is ExecutionStatus.CANCELLED
        stored = await parent_owner.store.get_execution(parent.id)
        assert stored.status is ExecutionStatus.CANCELLED


async def _child_of(engine: Engine, parent: str) -> str | None:
    records, _ = await engine.list_executions()
    found = [r.id for r in records if r.parent_execution_id == parent]
    return found[0] if found else None
