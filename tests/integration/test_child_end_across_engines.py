"""A child's end reaches its parent when two processes drive them: one the parent, the other
the child (after a crash, each was taken over by a different survivor).

Embedded (two engines on one SQLite file) and scale-out (two orchestrators on PostgreSQL +
Redis): the parent's ``workflow`` node resolves within a moment of the child's end, with the
child's result or its failure, exactly once; and a parent nobody drove when its child ended
resolves once an engine takes it over.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from engine_probes import child_of, children_of, polled, status_is
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from scaleout import scaleout_engine
from sign_release import RELEASE, sign

CHILD = sign()
PARENT = RELEASE

Opener = Callable[..., AbstractAsyncContextManager[Engine]]


def _embedded(url: str) -> Opener:
    @asynccontextmanager
    async def open_engine(*, resume: bool = False) -> AsyncIterator[Engine]:
        async with Engine(settings=load_settings(database_url=url), resume=resume) as engine:
            yield engine

    return open_engine


def _scaleout(pg: str, redis_url: str, prefix: str) -> Opener:
    def open_engine(*, resume: bool = False) -> AbstractAsyncContextManager[Engine]:
        return scaleout_engine(pg, redis_url, prefix, resume=resume)

    return open_engine


@pytest.fixture(params=["embedded", "scale-out"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    if request.param == "embedded":
        return _embedded(f"sqlite:///{tmp_path / 'two.db'}")
    pg = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_server")
    return _scaleout(pg, redis_url, request.getfixturevalue("redis_prefix"))


async def _parent_waiting_on_child(opener: Opener) -> tuple[str, str]:
    """A parent whose ``workflow`` node waits on a child at its approval, nobody driving
    either of them any more (given back, as a stopped process leaves them)."""
    async with opener(resume=True) as first:
        await first.submit(CHILD)
        parent = await first.start_execution(PARENT)
        child = await polled(lambda: child_of(first, parent.id))
        await polled(lambda: status_is(first, child, ExecutionStatus.WAITING))
        await polled(lambda: _node_waits(first, parent.id, times=1))
    return parent.id, child


async def _end_child(engine: Engine, child: str, how: str) -> None:
    if how == "cancelled":
        await engine.cancel(child)
    else:
        await engine.decide(child, "ask", approved=how == "completed", by="ada")


@pytest.mark.parametrize("how", ["completed", "failed", "cancelled"])
async def test_a_childs_end_reaches_a_parent_another_process_drives(
    opener: Opener, how: str
) -> None:
    parent, child = await _parent_waiting_on_child(opener)
    async with opener() as child_owner, opener() as parent_owner:
        assert await child_owner.adopt(await child_owner.store.get_execution(child))
        assert await parent_owner.adopt(await parent_owner.store.get_execution(parent))
        # The parent's recovery ran its node again: it found the child unfinished, and waits.
        await polled(lambda: _node_waits(parent_owner, parent, times=2))
        await _end_child(child_owner, child, how)
        record = await polled(lambda: _final(parent_owner, parent), timeout=5.0)
        await asyncio.sleep(1.0)  # whatever would act twice has had its chance
        await _assert_resolved_once(parent_owner, parent, child, how)
        assert (await parent_owner.store.get_execution(parent)).status is record.status


async def test_a_parent_nobody_drove_when_its_child_ended_resolves_when_taken_over(
    opener: Opener,
) -> None:
    """The parent's process is gone when the child ends (a request to it would find nobody):
    the engine that takes the parent over resolves its wait from the child's stored end."""
    parent, child = await _parent_waiting_on_child(opener)
    async with opener() as child_owner:
        assert await child_owner.adopt(await child_owner.store.get_execution(child))
        await _end_child(child_owner, child, "completed")
        await polled(lambda: status_is(child_owner, child, ExecutionStatus.COMPLETED))
        assert (await child_owner.store.get_execution(parent)).status is ExecutionStatus.WAITING
    async with opener(resume=True) as taker:
        await polled(lambda: _final(taker, parent), timeout=10.0)
        await asyncio.sleep(1.0)
        await _assert_resolved_once(taker, parent, child, "completed")


async def _assert_resolved_once(engine: Engine, parent: str, child: str, how: str) -> None:
    store = engine.store
    record = await store.get_execution(parent)
    events = await store.list_events(parent)
    ends = [e.type for e in events if e.node_id is None and e.type.startswith("execution.")]
    sub_ends = [
        e.type
        for e in events
        if e.node_id == "sub" and e.type in (RecordType.NODE_COMPLETED, RecordType.NODE_FAILED)
    ]
    if how == "completed":
        assert record.status is ExecutionStatus.COMPLETED
        assert ends.count(RecordType.EXECUTION_COMPLETED) == 1
        assert sub_ends == [RecordType.NODE_COMPLETED]
        outputs = await store.get_outputs(parent)
        assert outputs["sub"]["child_execution_id"] == child
        assert outputs["ship"] == {"signed": "by ada"}
    else:
        assert record.status is ExecutionStatus.FAILED
        assert ends.count(RecordType.EXECUTION_FAILED) == 1
        assert sub_ends == [RecordType.NODE_FAILED]
        runs = {run.node_id: run for run in await store.get_node_runs(parent)}
        assert runs["sub"].state is NodeState.FAILED
        assert child in str(runs["sub"].error) and how in str(runs["sub"].error)
    # No second child was started for the same wait.
    assert await children_of(engine, parent) == [child]


async def _final(engine: Engine, execution_id: str) -> Any:
    record = await engine.store.get_execution(execution_id)
    return record if record.status in FINAL_EXECUTION_STATES else None


async def _node_waits(engine: Engine, execution_id: str, *, times: int) -> bool:
    """Whether ``sub`` waits, its wait committed ``times`` times or more."""
    waits = await engine.store.list_events(execution_id, types=[RecordType.NODE_WAITING])
    runs = {run.node_id: run for run in await engine.store.get_node_runs(execution_id)}
    sub = runs.get("sub")
    return (
        sub is not None
        and sub.state is NodeState.WAITING
        and len([e for e in waits if e.node_id == "sub"]) >= times
    )
