"""Cancelling the root of a chain of sub-workflows cancels every descendant, children whose
start was under way as their parent was cancelled included, embedded and in scale-out mode."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_child_limits import chain, engine_in, everything, mode

from orchestrion.core.events import CancelRequested
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from scaleout import scaleout_engine, scaleout_settings, until

__all__ = ["mode"]


@pytest.mark.parametrize("after", [0.05, 0.3, 0.8])
async def test_cancelling_the_root_of_a_deep_chain_cancels_every_descendant(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path, after: float
) -> None:
    async with engine_in(mode, request, tmp_path, max_child_depth=32) as engine:
        await engine.submit(chain(30))
        definition = await engine.store.find_definition("chain", None)
        root = await engine.start_execution(definition, {"d": 0})
        await asyncio.sleep(after)
        await engine.cancel(root.id)

        async def all_cancelled() -> bool:
            records = await everything(engine)
            return all(r.status is ExecutionStatus.CANCELLED for r in records)

        await until(all_cancelled, 15, "every execution of the chain cancelled")
        count = len(await everything(engine))
        await asyncio.sleep(0.5)  # and nothing is started after
        records = await everything(engine)
        assert len(records) == count
        assert all(r.status is ExecutionStatus.CANCELLED for r in records)


async def test_an_execution_cancelled_as_it_starts_starts_no_child(tmp_path: Path) -> None:
    """Its start and its cancel in one turn: the workflow node is queued and cancelled at
    once, and its attempt, never run, starts nothing."""
    async with Engine(f"sqlite:///{tmp_path / 'turn.db'}") as engine:
        await engine.submit(chain(1, hold=0))
        definition = await engine.store.find_definition("chain", None)
        for _ in range(5):
            record, _made = await engine.create_execution(definition.id)
            triggering = asyncio.ensure_future(engine.trigger(record.id))
            while not engine.is_live(record.id):
                await asyncio.sleep(0)
            engine.post(record.id, CancelRequested(0.0, "at once"))
            await triggering
            assert (await engine.wait(record.id, timeout=5)).status is ExecutionStatus.CANCELLED
        await asyncio.sleep(0.3)
        records = await everything(engine)
        assert [r.id for r in records if r.parent_execution_id is not None] == []


async def test_a_cancel_through_the_api_process_reaches_every_descendant(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    """Scale-out, as the API does it: the root started and cancelled by an engine that drives
    nothing, the chain driven by an orchestrator."""
    settings = {"max_child_depth": 32}
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix, settings=settings),
        Engine(
            settings=scaleout_settings(postgres_url, redis_server, redis_prefix, **settings),
            drive=False,
        ) as api,
    ):
        await api.submit(chain(30))
        definition = await api.store.find_definition("chain", None)
        root = await api.start_execution(definition, {"d": 0})

        async def some_levels() -> bool:
            return len(await everything(api)) >= 4

        await until(some_levels, 15, "a few levels started")
        await api.cancel(root.id)

        async def all_cancelled() -> bool:
            records = await everything(api)
            return all(r.status is ExecutionStatus.CANCELLED for r in records)

        await until(all_cancelled, 15, "every execution of the chain cancelled")
        count = len(await everything(api))
        await asyncio.sleep(0.5)
        assert len(await everything(api)) == count
