"""``EngineReads``: the engine's read-only queries answer what the store holds, and change
nothing."""

from __future__ import annotations

import pytest

from orchestrion.engine.facade import Engine
from orchestrion.engine.reads import EngineReads
from orchestrion.errors import ExecutionNotFound

HELLO = {"name": "hello", "dag": {"nodes": [{"id": "hello", "handler": "noop"}]}}


async def test_the_queries_answer_from_the_engines_store() -> None:
    async with Engine("memory://") as engine:
        reads = EngineReads(lambda: engine.store)
        result = await engine.run(HELLO)
        execution = await reads.execution(result.execution_id)
        assert execution.status is result.status
        assert [run.node_id for run in await reads.node_runs(execution.id)] == ["hello"]
        events = await reads.events(execution.id)
        assert events and all(event.execution_id == execution.id for event in events)
        assert await reads.events(execution.id, after=events[-1].seq) == []
        definition = await reads.definition(execution.definition_id)
        assert (await reads.find_definition("hello")).id == definition.id
        assert [d.id for d in await reads.definitions("hello")] == [definition.id]
        await reads.check()
        assert await reads.dead_nodes().list() == []
        assert not reads.sealed(execution.id)
        with pytest.raises(ExecutionNotFound):
            await reads.execution("no-such-execution")


async def test_before_the_engine_starts_there_is_nothing_to_read() -> None:
    engine = Engine("memory://")
    with pytest.raises(RuntimeError, match="not started"):
        await EngineReads(lambda: engine.store).check()
