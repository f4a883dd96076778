"""A python function declared inline is as cut off from the engine as one that is not.

It runs inside the engine's turn, yet what it does must stay its own, as it does for a
function run as a task: what it raises fails its node only (``sys.exit`` included), a
context variable it sets is not seen by the next node, and changing a value it was given in
place changes neither the output it came from nor what the journal keeps of it. Each case
runs with the function declared inline and not, on a real SQLite file, and both must agree.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.functions import function, function_registry

_VAR: contextvars.ContextVar[str] = contextvars.ContextVar("t_isolation", default="unset")


def exits() -> None:
    sys.exit(3)  # a library that gives up the way a command line tool does


def raises_cancelled() -> None:
    raise asyncio.CancelledError  # a future cancelled by someone else, read by the function


async def raises_cancelled_async() -> None:
    raise asyncio.CancelledError


def sets_var() -> str:
    _VAR.set("leaked")
    return "set"


async def sets_var_async() -> str:
    _VAR.set("leaked")
    return "set"


def reads_var() -> str:
    return _VAR.get()


def makes() -> dict[str, Any]:
    return {"items": [1], "meta": {"n": 1}}


def appends(items: list[int]) -> int:
    items.append(2)
    return len(items)


def edits_context(ctx: NodeContext) -> str:
    # Every way of reading them gives the function a copy of its own.
    ctx.outputs["make"]["meta"]["n"] = 99
    ctx.outputs.get("make", {})["items"].append(5)
    for name, output in ctx.outputs.items():
        if name == "make":
            output["meta"]["n"] = 98
    for output in ctx.outputs.values():
        if isinstance(output, dict):
            output["items"].clear()
    ctx.outputs.copy()["make"]["items"].append(6)
    ctx.inputs["tags"].append("b")
    return "edited"


def reads(items: list[int]) -> list[int]:
    return items


def fine() -> str:
    return "fine"


def on_the_loop(value: int) -> list[Any]:
    asyncio.get_running_loop()  # raises in any other thread
    return [value, threading.current_thread() is threading.main_thread()]


_FUNCTIONS = {
    "t_exits": exits,
    "t_raises_cancelled": raises_cancelled,
    "t_raises_cancelled_async": raises_cancelled_async,
    "t_sets_var": sets_var,
    "t_sets_var_async": sets_var_async,
    "t_reads_var": reads_var,
    "t_makes": makes,
    "t_appends": appends,
    "t_edits_context": edits_context,
    "t_reads": reads,
    "t_fine": fine,
}


@pytest.fixture(params=[True, False], ids=["inline", "task"])
def inline(request: pytest.FixtureRequest) -> Iterator[bool]:
    for name, func in _FUNCTIONS.items():
        function(name, replace=True, inline=request.param)(func)
    try:
        yield request.param
    finally:
        for name in _FUNCTIONS:
            function_registry.unregister(name)


def _node(node_id: str, func: str, *after: str, **params: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "handler": "python",
        "config": {"function": func, "params": params},
    }
    if after:
        node["dependencies"] = list(after)
    return node


def _workflow(name: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "dag": {"nodes": list(nodes)}}


@pytest.mark.parametrize("func", ["t_exits", "t_raises_cancelled", "t_raises_cancelled_async"])
async def test_what_a_function_raises_fails_its_node_only(
    tmp_path: Path, inline: bool, func: str
) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        failing = await engine.start_execution(
            _workflow("raises", {**_node("raise", func), "retry": {"max_attempts": 1}})
        )
        result = await engine.wait(failing.id, timeout=10)
        assert result.status is ExecutionStatus.FAILED
        assert "raise" in result.error["nodes"]
        # The engine goes on with the next run.
        after = await engine.start_execution(_workflow("after", _node("fine", "t_fine")))
        assert (await engine.wait(after.id, timeout=10)).result == {"fine": "fine"}


@pytest.mark.parametrize("func", ["t_sets_var", "t_sets_var_async"])
async def test_a_context_variable_a_function_sets_stays_its_own(
    tmp_path: Path, inline: bool, func: str
) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        record = await engine.start_execution(
            _workflow("var", _node("set", func), _node("get", "t_reads_var", "set"))
        )
        result = await engine.wait(record.id, timeout=10)
    assert result.ok, result.error
    assert result.result == {"get": "unset"}


async def test_a_value_changed_in_place_leaves_the_output_it_came_from(
    tmp_path: Path, inline: bool
) -> None:
    database = tmp_path / "o.db"
    definition = _workflow(
        "in-place",
        _node("make", "t_makes"),
        _node("append", "t_appends", "make", items="{{ make.output.items }}"),
        _node("edit", "t_edits_context", "make", "append"),
        _node("read", "t_reads", "edit", items="{{ make.output.items }}"),
        _node("tags", "t_reads", "edit", items="{{ input.tags }}"),
    )
    async with Engine(f"sqlite:///{database}") as engine:
        record = await engine.start_execution(definition, inputs={"tags": ["a"]})
        result = await engine.wait(record.id, timeout=10)
    assert result.ok, result.error
    # What the next node reads is what the journal says the first one returned, as after a
    # restart, when every output is read back from the store.
    assert result.result == {"read": [1], "tags": ["a"]}
    connection = sqlite3.connect(database)
    try:
        (stored,) = connection.execute(
            "SELECT output FROM node_runs WHERE node_id = 'make'"
        ).fetchone()
    finally:
        connection.close()
    assert stored == '{"items":[1],"meta":{"n":1}}'


@pytest.mark.parametrize("declared", [{"inline": True}, {"blocking": False}])
async def test_a_param_rendered_in_a_thread_leaves_the_call_on_the_loop(
    tmp_path: Path, declared: dict[str, bool]
) -> None:
    # A filter is not a light template: the config renders in a render thread, yet the
    # function is called on the event loop, as its registration says.
    function("t_on_the_loop", replace=True, **declared)(on_the_loop)
    node = _node("where", "t_on_the_loop", value="{{ [1, 2, 3] | length }}")
    try:
        async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
            record = await engine.start_execution(_workflow("heavy", node))
            result = await engine.wait(record.id, timeout=10)
    finally:
        function_registry.unregister("t_on_the_loop")
    assert result.ok, result.error
    assert result.result == {"where": [3, True]}
