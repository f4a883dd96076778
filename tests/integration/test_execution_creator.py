"""Group commit of new executions against a real SQLite store: a refused batch is retried
one record at a time, so only the bad record's caller fails, and a caller that gives up
does not cancel the others' write."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.creation import ExecutionCreator
from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import DefinitionRecord, ExecutionRecord
from orchestrion.store.sql.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    adapter = SQLiteStore(tmp_path / "c.db")
    await adapter.open()
    await adapter.put_definition(
        DefinitionRecord(
            id="def-1",
            name="wf",
            version="1",
            spec={"name": "wf", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}},
            content_hash="h",
            source_format="yaml",
            dialect="canonical",
            created_at=0.0,
        )
    )
    try:
        yield adapter
    finally:
        await adapter.close()


def execution(execution_id: str, definition_id: str = "def-1") -> ExecutionRecord:
    return ExecutionRecord(
        id=execution_id,
        definition_id=definition_id,
        status=ExecutionStatus.PENDING,
        created_at=0.0,
    )


async def test_a_bad_record_fails_only_its_own_caller(store: SQLiteStore) -> None:
    creator = ExecutionCreator(lambda: store)
    outcomes = await asyncio.gather(
        creator.create(execution("e1")),
        creator.create(execution("e2", definition_id="gone")),
        creator.create(execution("e3")),
        return_exceptions=True,
    )
    assert outcomes[0] == (execution("e1"), True)
    assert isinstance(outcomes[1], ExecutionNotFound)
    assert "definition 'gone' not found" in str(outcomes[1])
    assert outcomes[2] == (execution("e3"), True)
    assert {(await store.get_execution(e)).id for e in ("e1", "e3")} == {"e1", "e3"}
    with pytest.raises(ExecutionNotFound):
        await store.get_execution("e2")


async def test_a_caller_that_gives_up_does_not_cancel_the_batch(store: SQLiteStore) -> None:
    creator = ExecutionCreator(lambda: store)
    impatient = asyncio.ensure_future(creator.create(execution("e1")))
    patient = asyncio.ensure_future(creator.create(execution("e2")))
    await asyncio.sleep(0)  # both are queued for the same write
    impatient.cancel()
    assert await patient == (execution("e2"), True)
    with pytest.raises(asyncio.CancelledError):
        await impatient
    assert (await store.get_execution("e1")).id == "e1"  # its write went through all the same
