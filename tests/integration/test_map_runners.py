"""A ``map`` node holds ``concurrency`` runners, not a task per item, and never holds the loop.

A map may have up to 100,000 items; a task per item would hold that many coroutines at once
whatever its ``concurrency``. An inner handler that never waits (``noop``, ``condition``) runs
its items without suspending, so the runners must let the event loop in by themselves.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from orchestrion.engine.facade import Engine


def mapper(items: int, config: dict[str, Any], concurrency: int) -> dict[str, Any]:
    return {
        "name": "map-runners",
        "dag": {
            "nodes": [
                {
                    "id": "each",
                    "handler": "map",
                    "config": {
                        "items": list(range(items)),
                        "handler": "noop",
                        "config": config,
                        "concurrency": concurrency,
                    },
                }
            ]
        },
    }


async def _run_sampling(
    engine: Engine, definition: dict[str, Any]
) -> tuple[dict[str, Any], int, int]:
    """Run ``definition``; also the most tasks alive at once and how often a ticker got in."""
    most = 0
    ticks = 0
    stop = asyncio.Event()

    async def sampler() -> None:
        nonlocal most, ticks
        while not stop.is_set():
            most = max(most, len(asyncio.all_tasks()))
            ticks += 1
            await asyncio.sleep(0)

    sampling = asyncio.create_task(sampler())
    try:
        result = await engine.run(definition, timeout=60)
    finally:
        stop.set()
        await sampling
    assert result.ok, result.error
    output = result.nodes["each"].output
    assert output is not None
    return output, most, ticks


async def test_a_map_of_many_waiting_items_holds_only_its_runners(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'm.db'}") as engine:
        output, most, _ = await _run_sampling(
            engine, mapper(300, {"value": "{{ item }}", "sleep": 0.001}, concurrency=4)
        )
    assert output["results"] == list(range(300))
    assert most < 40, most  # the engine's own tasks, the sampler and four runners


async def test_a_map_of_items_that_never_wait_lets_the_loop_in(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'm.db'}") as engine:
        output, most, ticks = await _run_sampling(
            engine, mapper(20_000, {"value": "{{ item * 2 }}"}, concurrency=1)
        )
    assert output["results"] == [i * 2 for i in range(20_000)]
    assert output["count"] == 20_000 and output["failed"] == 0
    assert most < 40, most
    # One runner, whose items never suspend: without its own yields the sampler would get
    # in only before and after the map.
    assert ticks >= 10, ticks
