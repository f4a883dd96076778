"""Sub-workflows that start themselves: how deep and how wide a tree of children may grow,
embedded and in scale-out mode."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import ConfigurationError
from orchestrion.settings import load_settings
from orchestrion.store.base import ExecutionFilter, ExecutionRecord
from scaleout import scaleout_engine, scaleout_settings, until

REC = {
    "name": "rec",
    "dag": {"nodes": [{"id": "again", "handler": "workflow", "config": {"workflow": "rec"}}]},
}

TWICE = {
    "name": "twice",
    "dag": {
        "nodes": [
            {"id": "left", "handler": "workflow", "config": {"workflow": "twice"}},
            {"id": "right", "handler": "workflow", "config": {"workflow": "twice"}},
        ]
    },
}


def _map_of(workflow: str, items: list[int]) -> dict[str, Any]:
    return {
        "id": "each",
        "handler": "map",
        "config": {"items": items, "handler": "workflow", "config": {"workflow": workflow}},
    }


FANS = {"name": "fans", "dag": {"nodes": [_map_of("fans", items=[1, 2, 3])]}}


def chain(levels: int, hold: float = 300) -> dict[str, Any]:
    """A workflow that starts itself ``levels`` times (a base case), each level holding on."""
    return {
        "name": "chain",
        "inputs": {"d": {"type": "integer", "default": 0}},
        "dag": {
            "nodes": [
                {
                    "id": "again",
                    "handler": "workflow",
                    "when": f"input.d < {levels}",
                    "config": {"workflow": "chain", "inputs": {"d": "{{ input.d + 1 }}"}},
                },
                {"id": "hold", "handler": "delay", "config": {"seconds": hold}},
            ]
        },
    }


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def engine_in(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path, **settings: Any
) -> AsyncIterator[Engine]:
    if mode == "scaleout":
        pg = request.getfixturevalue("postgres_url")
        redis_url = request.getfixturevalue("redis_server")
        prefix = request.getfixturevalue("redis_prefix")
        async with scaleout_engine(pg, redis_url, prefix, settings=settings) as engine:
            yield engine
        return
    url = "memory://" if mode == "memory" else f"sqlite:///{tmp_path / 'limits.db'}"
    async with Engine(settings=load_settings(database_url=url, **settings)) as engine:
        yield engine


async def everything(engine: Engine) -> list[ExecutionRecord]:
    records, _ = await engine.list_executions(ExecutionFilter(limit=1000))
    return records


async def test_a_workflow_that_starts_itself_stops_at_the_default_depth(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with engine_in(mode, request, tmp_path) as engine:
        await engine.submit(REC)
        root = await engine.start_execution(await engine.store.find_definition("rec", None))
        result = await engine.wait(root.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        records = await everything(engine)
        assert len(records) == 17  # the root and 16 levels of children (the default)
        deepest = max(records, key=lambda r: r.labels.get("child_depth", 0))
        assert deepest.labels["child_depth"] == 16
        message = (deepest.error or {}).get("message", "")
        assert "nested 17 levels deep" in message
        assert "ORCHESTRION_MAX_CHILD_DEPTH" in message
        assert "ORCHESTRION_MAX_CHILD_DEPTH" in (result.error or {}).get("message", "")
        await asyncio.sleep(0.3)
        assert len(await everything(engine)) == 17  # nothing more was started


async def test_the_depth_limit_is_a_setting_and_a_base_case_within_it_completes(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with engine_in(mode, request, tmp_path, max_child_depth=3) as engine:
        await engine.submit(chain(3, hold=0))
        definition = await engine.store.find_definition("chain", None)
        within = await engine.run(definition, {"d": 0}, timeout=30)
        assert within.ok, within.error
        assert len(await everything(engine)) == 4
        beyond = await engine.run(definition, {"d": -1}, timeout=30)
        assert beyond.status is ExecutionStatus.FAILED
        assert "nested 4 levels deep, more than the 3" in (beyond.error or {})["message"]
        assert len(await everything(engine)) == 8  # 4 more; the fifth was never made


async def test_a_workflow_that_doubles_each_level_stops_at_the_width_limit(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with engine_in(mode, request, tmp_path, max_child_width=8) as engine:
        await engine.submit(TWICE)
        root = await engine.start_execution(await engine.store.find_definition("twice", None))
        result = await engine.wait(root.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        message = (result.error or {}).get("message", "")
        assert "share of level 5 of its root's sub-workflows would be 16 executions" in message
        assert "more than the 8 that ORCHESTRION_MAX_CHILD_WIDTH set for this tree" in message

        async def settled() -> bool:
            records = await everything(engine)
            return all(r.status in FINAL_EXECUTION_STATES for r in records)

        await until(settled, 30, "every execution of the tree ended")
        # The root's two children have a share of 1 each, then 2, 4, 8: a fifth level of
        # 16 each is not made.
        assert len(await everything(engine)) == 1 + 2 + 4 + 8 + 16


async def test_a_map_of_its_own_workflow_multiplies_the_width_by_its_items(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    async with engine_in(mode, request, tmp_path, max_child_width=8) as engine:
        await engine.submit(FANS)
        root = await engine.start_execution(await engine.store.find_definition("fans", None))
        result = await engine.wait(root.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        assert "would be 9 executions, more than the 8" in (result.error or {})["message"]

        async def settled() -> bool:
            records = await everything(engine)
            return all(r.status in FINAL_EXECUTION_STATES for r in records)

        await until(settled, 30, "every execution of the tree ended")
        # The root's 3 items (a share of 1 each), their 3 items each (3): no third level.
        assert len(await everything(engine)) == 1 + 3 + 9


async def test_a_root_may_map_over_more_children_than_the_width(
    mode: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    leaf = {"name": "leaf", "dag": {"nodes": [{"id": "n", "handler": "noop"}]}}
    many = {
        "name": "many",
        "dag": {"nodes": [_map_of("leaf", items=list(range(6)))]},
    }
    async with engine_in(mode, request, tmp_path, max_child_width=2) as engine:
        await engine.submit(leaf)
        result = await engine.run(many, timeout=30)
        assert result.ok, result.error
        assert len(await everything(engine)) == 7


async def test_in_scale_out_the_process_that_makes_the_root_decides_the_limits(
    request: pytest.FixtureRequest,
) -> None:
    # The API process that takes the submit says 3 levels and 2 per level; the orchestrator
    # that drives every level says 6 and 64. One place decides, for the whole tree: the root
    # records the limits of the process that made it, and each child copies its parent's.
    pg = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")
    api_settings = scaleout_settings(pg, redis_url, prefix, max_child_depth=3, max_child_width=2)
    orchestrator_settings = {"max_child_depth": 6, "max_child_width": 64}
    async with (
        scaleout_engine(pg, redis_url, prefix, settings=orchestrator_settings) as orchestrator,
        Engine(settings=api_settings, drive=False) as api,
    ):
        assert not api.drives
        await api.submit(REC)
        deep = await api.start_execution(await api.store.find_definition("rec", None))
        result = await orchestrator.wait(deep.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        message = (result.error or {}).get("message", "")
        assert "nested 4 levels deep, more than the 3 that ORCHESTRION_MAX_CHILD_DEPTH" in message
        assert "set for this tree" in message
        records = await everything(orchestrator)
        assert len(records) == 4  # the root and 3 levels, not the orchestrator's 6
        assert {(r.labels["max_child_depth"], r.labels["max_child_width"]) for r in records} == {
            (3, 2)
        }

        await api.submit(TWICE)
        wide = await api.start_execution(await api.store.find_definition("twice", None))
        result = await orchestrator.wait(wide.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        message = (result.error or {}).get("message", "")
        assert "share of level 3 of its root's sub-workflows would be 4 executions" in message
        assert "more than the 2 that ORCHESTRION_MAX_CHILD_WIDTH set for this tree" in message

        async def settled() -> bool:
            return all(r.status in FINAL_EXECUTION_STATES for r in await everything(api))

        await until(settled, 30, "every execution of both trees ended")
        # The root, its two children (a share of 1), theirs (2): no third level of 4 each.
        assert len(await everything(api)) == 4 + 1 + 2 + 4


async def test_a_tree_keeps_the_limits_in_force_when_its_root_was_submitted(
    tmp_path: Path,
) -> None:
    # Submitted (made pending) by a process with a depth of 2; triggered and driven, after
    # a restart, by one with 16: the tree obeys 2, as the submit recorded it.
    url = f"sqlite:///{tmp_path / 'limits.db'}"
    async with Engine(settings=load_settings(database_url=url, max_child_depth=2)) as engine:
        definition = await engine.submit(REC)
        pending, _ = await engine.create_execution(definition.id)
    async with Engine(settings=load_settings(database_url=url, max_child_depth=16)) as engine:
        await engine.trigger(pending.id)
        result = await engine.wait(pending.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        message = (result.error or {}).get("message", "")
        assert "nested 3 levels deep, more than the 2 that ORCHESTRION_MAX_CHILD_DEPTH" in message
        assert len(await everything(engine)) == 3


@pytest.mark.parametrize(("value", "says"), [("0", "greater than or equal to 1"), ("33", "32")])
def test_the_depth_setting_is_refused_outside_its_range(
    monkeypatch: pytest.MonkeyPatch, value: str, says: str
) -> None:
    monkeypatch.setenv("ORCHESTRION_MAX_CHILD_DEPTH", value)
    with pytest.raises(ConfigurationError, match=f"ORCHESTRION_MAX_CHILD_DEPTH: .*{says}"):
        load_settings()
