"""The result of an execution this engine drove from start to end is the one the store holds.

Such a result is built from what the engine committed instead of being read back; whether
the caller waits before the end or after it, it must equal, field by field, what another
engine reads from the same SQLite file: states, attempts, times, errors, and outputs as
JSON keeps them (a tuple comes back a list, a key a string).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.result import ExecutionResult
from orchestrion.engine.facade import Engine
from orchestrion.handlers.python import function_registry

NAMES = ("t_shaped", "t_broken", "t_slow")


def shaped(ctx: Any) -> Any:
    return {"pair": (1, 2), 3: "three", "nested": [{"x": (4.5, None)}], "text": "é"}


def broken(ctx: Any) -> Any:
    raise ValueError("this node breaks")


async def slow(ctx: Any, value: Any = None) -> Any:
    await asyncio.sleep(0.05)
    return [value, (value,)]


@pytest.fixture
def functions() -> Iterator[None]:
    function_registry.register("t_shaped", shaped, replace=True, blocking=False)
    function_registry.register("t_broken", broken, replace=True, blocking=False)
    function_registry.register("t_slow", slow, replace=True)
    yield
    for name in NAMES:
        function_registry.unregister(name)


def _node(node_id: str, function: str, *parents: str, **extra: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "handler": "python", "config": {"function": function}}
    if parents:
        node["dependencies"] = list(parents)
    node.update(extra)
    return node


COMPLETES = {
    "name": "completes",
    "dag": {
        "nodes": [
            _node("a", "t_shaped"),
            _node("b", "t_shaped", "a", when="{{ false }}"),
            {"id": "c", "handler": "noop", "dependencies": ["a"], "config": {"value": [1, (2,)]}},
            _node("d", "t_slow", "c"),
        ]
    },
}
FAILS = {
    "name": "fails",
    "dag": {
        "nodes": [_node("a", "t_shaped"), _node("b", "t_broken", "a"), _node("c", "t_shaped", "b")]
    },
}


def _same(driven: ExecutionResult, stored: ExecutionResult) -> None:
    assert driven.to_dict() == stored.to_dict()
    assert driven == stored


@pytest.mark.parametrize("definition", [COMPLETES, FAILS], ids=["completes", "fails"])
async def test_a_result_built_here_is_the_stored_one(
    functions: None, tmp_path: Path, definition: dict[str, Any]
) -> None:
    url = f"sqlite:///{tmp_path / 'o.db'}"
    async with Engine(url) as engine:
        ended = await engine.run(definition, timeout=30)  # the wait comes after the end
        started = await engine.start_execution(definition)
        waited = await engine.wait(started.id, timeout=30)  # the wait comes before it
    async with Engine(url) as reader:
        for driven in (ended, waited):
            _same(driven, await reader.wait(driven.execution_id, timeout=30))
    assert ended.status == waited.status
    if definition is COMPLETES:
        assert ended.ok
        assert ended.nodes["a"].output == {
            "pair": [1, 2],
            "3": "three",
            "nested": [{"x": [4.5, None]}],
            "text": "é",
        }
        assert ended.nodes["b"].state == "skipped"
        assert ended.result == {"d": [None, [None]]}
    else:
        assert not ended.ok
        assert ended.nodes["b"].error is not None
        assert "this node breaks" in ended.nodes["b"].error["message"]


async def test_a_result_is_the_callers_own(functions: None, tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        first = await engine.run(COMPLETES, timeout=30)
        first.nodes["a"].output["pair"].append(3)
        again = await engine.wait(first.execution_id, timeout=30)
    assert again.nodes["a"].output["pair"] == [1, 2]
