"""User functions as nodes on a real SQLite file: each attempt starts at once, in the turn
that committed its dispatch, and one that does not suspend needs no task of its own.

What must hold whatever the shortcut: a function runs only once its dispatch and its
parents' outputs are committed (another connection sees them), it runs as a task of its own
(``asyncio.current_task()``, timeouts, context variables), and one that suspends carries on
as usual.
"""

from __future__ import annotations

import asyncio
import contextvars
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.handlers.python import function_registry

SEEN: list[dict[str, Any]] = []
PROBE: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")
DATABASE: list[Path] = []


def _committed(execution_id: str) -> dict[str, tuple[str, str | None]]:
    """Node states and outputs as another process sees them: a connection of its own."""
    connection = sqlite3.connect(DATABASE[0])
    try:
        rows = connection.execute(
            "SELECT node_id, state, output FROM node_runs WHERE execution_id = ?",
            (execution_id,),
        ).fetchall()
    finally:
        connection.close()
    return {node: (state, output) for node, state, output in rows}


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # a worker thread has no event loop
        return None


def _observe(ctx: Any, value: Any) -> Any:
    SEEN.append(
        {
            "node": ctx.node_id,
            "committed": _committed(ctx.execution_id),
            "task": _current_task(),
            "thread": threading.get_ident(),
            "probe": PROBE.get(),
        }
    )
    PROBE.set(ctx.node_id)  # must not leak into the engine or the next attempt
    return value


async def probe_async(ctx: Any, value: Any = None) -> Any:
    return _observe(ctx, value)


def probe_sync(ctx: Any, value: Any = None) -> Any:
    return _observe(ctx, value)


async def suspends(ctx: Any, value: Any = None) -> Any:
    await asyncio.sleep(0.001)
    return _observe(ctx, value)


@pytest.fixture
def functions(tmp_path: Path) -> Iterator[Path]:
    SEEN.clear()
    DATABASE[:] = [tmp_path / "o.db"]
    function_registry.register("t_probe_async", probe_async, replace=True)
    function_registry.register("t_probe_quick", probe_sync, replace=True, blocking=False)
    function_registry.register("t_probe_thread", probe_sync, replace=True)
    function_registry.register("t_suspends", suspends, replace=True)
    yield DATABASE[0]
    for name in ("t_probe_async", "t_probe_quick", "t_probe_thread", "t_suspends"):
        function_registry.unregister(name)


def _chain(functions: list[str]) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = []
    for i, name in enumerate(functions):
        node: dict[str, Any] = {
            "id": f"c{i}",
            "handler": "python",
            "config": {"function": name, "params": {"value": i}},
        }
        if i:
            node["dependencies"] = [f"c{i - 1}"]
            node["config"]["params"]["value"] = f"{{{{ c{i - 1}.output }}}}"
        nodes.append(node)
    return {"name": "functions", "dag": {"nodes": nodes}}


@pytest.mark.parametrize("name", ["t_probe_async", "t_probe_quick", "t_probe_thread"])
async def test_a_function_sees_its_parents_output_committed_before_it_runs(
    functions: Path, name: str
) -> None:
    async with Engine(f"sqlite:///{functions}") as engine:
        result = await engine.run(_chain([name] * 6 + ["t_suspends"] * 2), timeout=30)
        loop_task = engine._loop.task
    assert result.ok, result.error
    assert result.result == {"c7": 0}
    assert [seen["node"] for seen in SEEN] == [f"c{i}" for i in range(8)]
    for i, seen in enumerate(SEEN):
        committed = seen["committed"]
        # Its own dispatch is durable, and so is every parent's completion with its output.
        assert committed[f"c{i}"][0] in ("queued", "running"), (i, committed)
        for parent in range(i):
            assert committed[f"c{parent}"] == ("completed", "0"), (i, parent, committed)
        assert f"c{i + 1}" not in committed
        # A task of its own, never the engine's; context variables of its own.
        assert seen["probe"] == "unset"
    async_tasks = [seen["task"] for seen in SEEN if seen["thread"] == threading.get_ident()]
    assert all(task is not None and task is not loop_task for task in async_tasks)
    assert len({id(task) for task in async_tasks}) == len(async_tasks)
    if name == "t_probe_thread":
        assert all(seen["thread"] != threading.get_ident() for seen in SEEN[:6])
    else:
        assert all(seen["thread"] == threading.get_ident() for seen in SEEN[:6])
    assert PROBE.get() == "unset"


async def test_a_fan_out_of_functions_completes_with_every_output(functions: Path) -> None:
    nodes: list[dict[str, Any]] = [
        {"id": "root", "handler": "python", "config": {"function": "t_probe_async"}}
    ]
    for i in range(50):
        name = ("t_probe_async", "t_probe_quick", "t_suspends")[i % 3]
        nodes.append(
            {
                "id": f"n{i}",
                "handler": "python",
                "dependencies": ["root"],
                "config": {"function": name, "params": {"value": i}},
            }
        )
    nodes.append(
        {
            "id": "sink",
            "handler": "python",
            "dependencies": [f"n{i}" for i in range(50)],
            "config": {
                "function": "t_probe_async",
                "params": {"value": "{{ n49.output }}"},
            },
        }
    )
    async with Engine(f"sqlite:///{functions}") as engine:
        result = await engine.run({"name": "fan", "dag": {"nodes": nodes}}, timeout=30)
    assert result.ok, result.error
    sink = next(seen for seen in SEEN if seen["node"] == "sink")
    assert all(sink["committed"][f"n{i}"] == ("completed", str(i)) for i in range(50))


async def test_a_function_past_its_timeout_is_stopped(functions: Path) -> None:
    definition = {
        "name": "slow",
        "dag": {
            "nodes": [
                {
                    "id": "slow",
                    "handler": "python",
                    "timeout": "50ms",
                    "retry": {"max_attempts": 1},
                    "config": {"function": "sleep", "params": {"seconds": 5}},
                },
            ]
        },
    }
    async with Engine(f"sqlite:///{functions}") as engine:
        result = await engine.run(definition, timeout=10)
        assert engine._loop.task is not None and not engine._loop.task.done()
    assert result.status is ExecutionStatus.FAILED
    assert result.nodes["slow"].error is not None
    assert result.nodes["slow"].error["category"] == "timeout"


@pytest.mark.parametrize("name", ["t_probe_thread", "t_suspends"])
async def test_a_chain_of_suspending_functions_commits_once_per_node(
    functions: Path, name: str
) -> None:
    # A function that suspends (a worker thread, an await) and ends soon posts its start
    # with its outcome: both are committed in one turn, the journal is unchanged.
    commits: list[list[str]] = []

    def listener(_execution_id: str, records: list[Any]) -> None:  # once per commit
        commits.append([f"{r.type} {r.node}" for r in records])

    async with Engine(f"sqlite:///{functions}") as engine:
        engine.add_listener(listener)
        result = await engine.run(_chain([name] * 20), timeout=30)
        events = await engine.store.list_events(result.execution_id)
    assert result.ok, result.error
    assert len(commits) <= 20 + 4, commits  # a start left alone by a slow machine: a few more
    journal = [(e.type, e.node_id) for e in events if e.node_id is not None]
    assert journal == [
        (kind, f"c{i}")
        for i in range(20)
        for kind in ("node.queued", "node.started", "node.completed")
    ]


async def test_a_long_function_is_committed_as_running_while_it_runs(functions: Path) -> None:
    release = threading.Event()

    def blocks(ctx: Any) -> str:
        release.wait(10)
        return "done"

    function_registry.register("t_blocks", blocks, replace=True)
    try:
        async with Engine(f"sqlite:///{functions}") as engine:
            definition = {
                "name": "long",
                "dag": {
                    "nodes": [
                        {"id": "long", "handler": "python", "config": {"function": "t_blocks"}}
                    ]
                },
            }
            record = await engine.start_execution(await engine.submit(definition))
            states: list[str] = []
            for _ in range(200):  # its start is held back a moment, then committed alone
                states = [state for state, _output in _committed(record.id).values()]
                if states == ["running"]:
                    break
                await asyncio.sleep(0.01)
            release.set()
            result = await engine.wait(record.id, timeout=10)
    finally:
        release.set()
        function_registry.unregister("t_blocks")
    assert states == ["running"]
    assert result.ok and result.result == {"long": "done"}


async def test_each_attempt_stores_its_config_as_declared_whatever_a_function_did(
    functions: Path,
) -> None:
    # What is stored of a config without templates is worked out once per node: a function
    # that changes its params in place changes neither the next attempt's params nor what is
    # stored of them.
    def grows(items: list[int], extra: dict[str, Any]) -> int:
        items.append(len(items))
        extra["seen"] = True
        return len(items)

    function_registry.register("t_grows", grows, replace=True)
    config = {"function": "t_grows", "params": {"items": [1, 2], "extra": {"a": 1}}}
    definition = {
        "name": "grows",
        "dag": {"nodes": [{"id": "g", "handler": "python", "config": config}]},
    }
    try:
        async with Engine(f"sqlite:///{functions}") as engine:
            stored = await engine.submit(definition)
            results, inputs = [], []
            for _ in range(3):
                record = await engine.start_execution(stored)
                results.append((await engine.wait(record.id, timeout=10)).result)
                events = await engine.store.list_events(record.id, types=["node.started"])
                inputs.append([(e.data or {}).get("inputs") for e in events])
    finally:
        function_registry.unregister("t_grows")
    assert results == [{"g": 3}] * 3
    declared = {"function": "t_grows", "params": {"items": [1, 2], "extra": {"a": 1}}}
    assert inputs == [[declared]] * 3


async def test_a_function_that_waited_for_a_free_slot_is_committed_as_running(
    functions: Path,
) -> None:
    # With one slot, the second attempt suspends waiting for it before it starts: its start,
    # held back once it runs, must still be committed while it runs.
    gates = {"a": threading.Event(), "b": threading.Event()}

    def gated(ctx: Any) -> str:
        gates[ctx.node_id].wait(10)
        return ctx.node_id

    function_registry.register("t_gated", gated, replace=True)
    nodes = [{"id": node, "handler": "python", "config": {"function": "t_gated"}} for node in gates]

    async def running(execution_id: str, count: int) -> list[str]:
        for _ in range(300):
            states = _committed(execution_id)
            now = sorted(node for node, (state, _output) in states.items() if state == "running")
            if len(now) >= count:
                return now
            await asyncio.sleep(0.01)
        return now

    try:
        async with Engine(f"sqlite:///{functions}", concurrency=1) as engine:
            stored = await engine.submit({"name": "gated", "dag": {"nodes": nodes}})
            record = await engine.start_execution(stored)
            first = await running(record.id, 1)
            assert len(first) == 1, first
            gates[first[0]].set()
            other = next(node for node in gates if node != first[0])
            for _ in range(300):  # the first completes; the other runs, still blocked
                states = _committed(record.id)
                if states.get(other, ("", None))[0] == "running":
                    break
                await asyncio.sleep(0.01)
            assert states[other][0] == "running", states
            assert not gates[other].is_set()
            gates[other].set()
            result = await engine.wait(record.id, timeout=10)
    finally:
        for gate in gates.values():
            gate.set()
        function_registry.unregister("t_gated")
    assert result.ok and result.result == {"a": "a", "b": "b"}
