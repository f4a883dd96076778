"""Tasks whose first step runs at once (``execution/eager.py``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from orchestrion.execution.eager import start_eagerly


async def test_a_coroutine_that_does_not_suspend_ends_in_the_call() -> None:
    seen: list[Any] = []

    async def quick() -> None:
        seen.append(asyncio.current_task())

    caller = asyncio.current_task()
    assert start_eagerly(quick(), "quick") is None
    assert len(seen) == 1 and seen[0] is not None and seen[0] is not caller
    assert asyncio.current_task() is caller


async def test_one_that_suspends_carries_on_in_its_task_and_can_be_cancelled() -> None:
    steps: list[str] = []
    gate = asyncio.Event()

    async def slow() -> None:
        steps.append("first")
        try:
            await gate.wait()
            steps.append("woken")
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            steps.append("cancelled")
            raise

    task = start_eagerly(slow(), "slow")
    assert task is not None and steps == ["first"]
    gate.set()
    await asyncio.sleep(0.01)
    assert steps == ["first", "woken"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps[-1] == "cancelled"


async def test_a_timeout_inside_binds_to_the_new_task() -> None:
    async def bounded() -> None:
        async with asyncio.timeout(0.01):
            await asyncio.sleep(10)

    task = start_eagerly(bounded(), "bounded")
    assert task is not None
    with pytest.raises(TimeoutError):
        await task
    assert not asyncio.current_task().cancelling()  # type: ignore[union-attr]


async def test_cancelled_before_its_task_steps_the_coroutine_is_closed() -> None:
    closed: list[bool] = []

    async def waits() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            closed.append(True)

    task = start_eagerly(waits(), "waits")
    assert task is not None
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await asyncio.sleep(0)
    assert closed == [True]
