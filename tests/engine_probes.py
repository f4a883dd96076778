"""Polling engines from a test: wait for a condition, and the conditions the tests of
executions driven by several engines wait for (a status, a parent's children)."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine

__all__ = ["child_of", "children_of", "polled", "status_is"]


async def polled(check: Any, timeout: float = 20.0) -> Any:
    """The first true answer of ``check()`` (awaited every 50 ms); TimeoutError after
    ``timeout`` seconds."""
    async with asyncio.timeout(timeout):
        while not (found := await check()):
            await asyncio.sleep(0.05)
    return found


async def status_is(engine: Engine, execution_id: str, status: ExecutionStatus) -> bool:
    return (await engine.store.get_execution(execution_id)).status is status


async def children_of(engine: Engine, parent: str) -> list[str]:
    records, _ = await engine.list_executions()
    return [r.id for r in records if r.parent_execution_id == parent]


async def child_of(engine: Engine, parent: str) -> str | None:
    found = await children_of(engine, parent)
    return found[0] if found else None
