"""Execution and definition ids grow with time, so a store keeps each new one's rows together."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from orchestrion.engine.facade import Engine

ONE_NODE = {"name": "ids", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


async def test_executions_started_one_after_another_have_ids_in_that_order(
    tmp_path: Path,
) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'ids.db'}") as engine:
        definition = await engine.submit(ONE_NODE)
        ids = []
        for _ in range(5):
            record = await engine.start_execution(definition)
            ids.append(record.id)
            await asyncio.sleep(0.002)
        created, _ = await engine.list_executions()
    assert ids == sorted(ids)
    assert {uuid.UUID(i).version for i in [*ids, definition.id]} == {7}
    assert sorted(r.id for r in created) == ids
