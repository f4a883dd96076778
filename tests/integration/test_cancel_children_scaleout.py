"""Scale-out: cancelling a parent cancels its child when another orchestrator drives the child
(the parent's orchestrator asks the child's owner over the streams)."""

from __future__ import annotations

import asyncio

import pytest

from engine_probes import child_of, polled, status_is
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from scaleout import scaleout_engine, scaleout_settings

CHILD = {
    "name": "napper",
    "dag": {"nodes": [{"id": "nap", "handler": "delay", "config": {"seconds": 60}}]},
}
PARENT = {
    "name": "calls-napper",
    "dag": {"nodes": [{"id": "sub", "handler": "workflow", "config": {"workflow": "napper"}}]},
}


@pytest.mark.parametrize("settled", [False, True], ids=["at-once", "after-recovery"])
async def test_cancel_reaches_a_child_driven_by_another_orchestrator(
    postgres_url: str, redis_server: str, redis_prefix: str, settled: bool
) -> None:
    pg, redis_url, prefix = postgres_url, redis_server, redis_prefix
    async with scaleout_engine(pg, redis_url, prefix) as first:
        await first.submit(CHILD)
        parent = await first.start_execution(PARENT)
        child = await polled(lambda: child_of(first, parent.id))
        await polled(lambda: status_is(first, child, ExecutionStatus.WAITING))
    # Given back at stop; now one orchestrator drives the child, another the parent.
    async with (
        scaleout_engine(pg, redis_url, prefix, resume=False) as child_owner,
        scaleout_engine(pg, redis_url, prefix, resume=False) as parent_owner,
        Engine(settings=scaleout_settings(pg, redis_url, prefix), drive=False) as api,
    ):
        assert await child_owner.adopt(await child_owner.store.get_execution(child))
        assert await parent_owner.adopt(await parent_owner.store.get_execution(parent.id))
        if settled:  # the parent's recovery re-ran its node, which found the child again
            await asyncio.sleep(0.5)
        await api.cancel(parent.id)
        await polled(lambda: status_is(api, parent.id, ExecutionStatus.CANCELLED))
        await polled(lambda: status_is(api, child, ExecutionStatus.CANCELLED))


@pytest.mark.parametrize("verb", ["cancel", "pause"])
async def test_a_cli_with_only_the_database_controls_an_orchestrators_execution(
    postgres_url: str, redis_server: str, redis_prefix: str, verb: str
) -> None:
    """`orchestrion cancel|pause --db postgresql://...` without the Redis URL: the request goes
    through the journal, and the orchestrator that drives the execution carries it out."""
    pg, redis_url, prefix = postgres_url, redis_server, redis_prefix
    async with scaleout_engine(pg, redis_url, prefix) as orchestrator:
        execution = await orchestrator.start_execution(CHILD)
        await polled(lambda: status_is(orchestrator, execution.id, ExecutionStatus.WAITING))
        async with Engine(f"postgresql://{pg.split('://', 1)[1]}", resume=False) as cli:
            await asyncio.wait_for(getattr(cli, verb)(execution.id), 15)
            wanted = ExecutionStatus.CANCELLED if verb == "cancel" else ExecutionStatus.PAUSED
            await polled(lambda: status_is(cli, execution.id, wanted))


MID = {
    "name": "calls-napper-too",
    "dag": {"nodes": [{"id": "inner", "handler": "workflow", "config": {"workflow": "napper"}}]},
}
OUTER = {
    "name": "calls-mid",
    "dag": {
        "nodes": [{"id": "sub", "handler": "workflow", "config": {"workflow": "calls-napper-too"}}]
    },
}


async def test_an_orchestrators_cancel_returns_once_children_and_grandchildren_are_cancelled(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    """An orchestrator cancels a parent nobody drives (given back, as after its owner's end):
    when the cancel returns, its child and grandchild are cancelled too, so an engine closed
    at once (a command that cancels and exits) leaves none of them running."""
    pg, redis_url, prefix = postgres_url, redis_server, redis_prefix
    async with scaleout_engine(pg, redis_url, prefix) as first:
        await first.submit(CHILD)
        await first.submit(MID)
        parent = await first.start_execution(OUTER)
        child = await polled(lambda: child_of(first, parent.id))
        grandchild = await polled(lambda: child_of(first, child))
        await polled(lambda: status_is(first, grandchild, ExecutionStatus.WAITING))
    async with scaleout_engine(pg, redis_url, prefix, resume=False) as canceller:
        await canceller.cancel(parent.id)
        lineage = [await canceller.store.get_execution(e) for e in (parent.id, child, grandchild)]
        assert [record.status for record in lineage] == [ExecutionStatus.CANCELLED] * 3
