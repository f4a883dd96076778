"""Python functions registered with ``inline=True``, on a real SQLite file.

Such a function runs inside the engine's turn, as ``noop`` does: a chain of them shares a
few commits instead of one per node, while a node that may act on the world (a function not
declared inline, an http call) still finds every one of them committed before it runs. An
``async def`` that has to wait is run again as a usual attempt; failures, retries, the
context, outputs JSON cannot hold, maps and trigger-time overrides behave as for any
python node.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import TransientNodeError
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.functions import function, function_registry

CALLS: dict[str, int] = {}


async def add_one(value: int) -> int:
    return value + 1


def add_one_sync(value: int) -> int:
    return value + 1


async def waits_first(value: int) -> int:
    CALLS["waits_first"] = CALLS.get("waits_first", 0) + 1
    await asyncio.sleep(0.01)
    return value * 10


def refuses_twice(ctx: NodeContext) -> dict[str, int]:
    CALLS["refuses_twice"] = CALLS.get("refuses_twice", 0) + 1
    if ctx.attempt < 3:
        raise TransientNodeError(f"attempt {ctx.attempt} refused")
    return {"attempt": ctx.attempt, "node": len(ctx.node_id)}


def gives_a_set() -> Any:
    return {1, 2}


async def add_one_later(value: int) -> int:  # not declared inline: a task, as I/O would be
    await asyncio.sleep(0)
    return value + 1


_INLINE = {
    "t_add_one": add_one,
    "t_add_one_sync": add_one_sync,
    "t_waits_first": waits_first,
    "t_refuses_twice": refuses_twice,
    "t_gives_a_set": gives_a_set,
}


@pytest.fixture(autouse=True)
def functions() -> Iterator[None]:
    CALLS.clear()
    for name, func in _INLINE.items():
        function(name, replace=True, inline=True)(func)
    function("t_add_one_later", replace=True)(add_one_later)
    try:
        yield
    finally:
        for name in [*_INLINE, "t_add_one_later"]:
            function_registry.unregister(name)


def chain(length: int, func: str) -> dict[str, Any]:
    """``length`` python nodes in a line, each adding one to its predecessor's output."""
    config: dict[str, Any] = {"function": func, "params": {"value": 0}}
    nodes: list[dict[str, Any]] = [{"id": "c0", "handler": "python", "config": config}]
    nodes += [
        {
            "id": f"c{i}",
            "handler": "python",
            "dependencies": [f"c{i - 1}"],
            "config": {"function": func, "params": {"value": f"{{{{ c{i - 1}.output }}}}"}},
        }
        for i in range(1, length)
    ]
    return {"name": f"chain-{length}-{func}", "dag": {"nodes": nodes}}


async def _run(
    tmp_path: Path, definition: dict[str, Any], **start: Any
) -> tuple[Any, list[Any], list[list[str]]]:
    commits: list[list[str]] = []

    def listener(_execution_id: str, records: list[Any]) -> None:  # once per commit
        commits.append([f"{r.type} {r.node}" for r in records])

    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        engine.add_listener(listener)
        record = await engine.start_execution(definition, **start)
        result = await engine.wait(record.id, timeout=30)
        events = await engine.store.list_events(record.id)
    return result, events, commits


@pytest.mark.parametrize("func", ["t_add_one", "t_add_one_sync"])
async def test_a_chain_of_inline_functions_shares_a_few_commits(tmp_path: Path, func: str) -> None:
    result, events, commits = await _run(tmp_path, chain(100, func))
    assert result.ok, result.error
    assert result.result == {"c99": 100}
    # One commit per node for a function not declared inline; these share one per 5 ms of
    # them, and the journal is the same, node by node, in order.
    assert len(commits) < 25, len(commits)
    journal = [(e.type, e.node_id) for e in events if e.node_id is not None]
    assert journal == [
        (kind, f"c{i}")
        for i in range(100)
        for kind in ("node.queued", "node.started", "node.completed")
    ]


async def test_functions_not_declared_inline_commit_before_each_node(tmp_path: Path) -> None:
    result, _events, commits = await _run(tmp_path, chain(20, "t_add_one_later"))
    assert result.ok, result.error
    assert result.result == {"c19": 20}
    assert len(commits) >= 20, len(commits)


async def test_a_node_after_inline_functions_finds_them_committed(tmp_path: Path) -> None:
    database = tmp_path / "o.db"
    seen: dict[str, str] = {}

    def probe(value: int) -> int:  # a function that could act on the world
        connection = sqlite3.connect(database)  # another connection: committed rows only
        try:
            seen.update(connection.execute("SELECT node_id, state FROM node_runs").fetchall())
        finally:
            connection.close()
        return value

    definition = chain(30, "t_add_one")
    definition["dag"]["nodes"].append(
        {
            "id": "probe",
            "handler": "python",
            "dependencies": ["c29"],
            "config": {"function": "t_probe", "params": {"value": "{{ c29.output }}"}},
        }
    )
    function("t_probe", replace=True)(probe)
    try:
        result, _events, _commits = await _run(tmp_path, definition)
    finally:
        function_registry.unregister("t_probe")
    assert result.ok, result.error
    assert result.result == {"probe": 30}
    assert {f"c{i}" for i in range(30)} <= {n for n, s in seen.items() if s == "completed"}
    assert seen["probe"] in ("queued", "running")


async def test_an_inline_coroutine_that_waits_runs_as_a_usual_attempt(tmp_path: Path) -> None:
    definition = chain(3, "t_add_one")
    definition["dag"]["nodes"][1]["config"]["function"] = "t_waits_first"
    result, events, _commits = await _run(tmp_path, definition)
    assert result.ok, result.error
    assert result.result == {"c2": 11}  # (0 + 1) * 10 + 1
    # Stopped at its first wait inside the turn, then run again from the start as a task.
    assert CALLS["waits_first"] == 2
    started = [e.attempt for e in events if e.node_id == "c1" and e.type == "node.started"]
    assert started == [1]


async def test_an_inline_function_that_fails_is_retried(tmp_path: Path) -> None:
    definition = {
        "name": "refused",
        "dag": {
            "nodes": [
                {
                    "id": "try",
                    "handler": "python",
                    "config": {"function": "t_refuses_twice"},
                    "retry": {"max_attempts": 3, "initial_delay": 0.01, "jitter": "none"},
                },
                {
                    "id": "after",
                    "handler": "python",
                    "dependencies": ["try"],
                    "config": {
                        "function": "t_add_one",
                        "params": {"value": "{{ try.output.attempt }}"},
                    },
                },
            ]
        },
    }
    result, events, _commits = await _run(tmp_path, definition)
    assert result.ok, result.error
    assert result.result == {"after": 4}
    assert CALLS["refuses_twice"] == 3
    kinds = [(e.type, e.attempt) for e in events if e.node_id == "try"]
    assert kinds == [
        ("node.queued", 1),
        ("node.started", 1),
        ("node.retry_scheduled", 1),
        ("node.queued", 2),
        ("node.started", 2),
        ("node.retry_scheduled", 2),
        ("node.queued", 3),
        ("node.started", 3),
        ("node.completed", 3),
    ]


async def test_an_inline_output_json_cannot_hold_fails_naming_the_node(tmp_path: Path) -> None:
    definition = {
        "name": "a-set",
        "dag": {
            "nodes": [{"id": "shape", "handler": "python", "config": {"function": "t_gives_a_set"}}]
        },
    }
    result, _events, _commits = await _run(tmp_path, definition)
    assert result.status is ExecutionStatus.FAILED
    assert "node 'shape'" in str(result.error)
    assert "'set'" in str(result.error)


async def test_an_override_to_a_function_not_inline_runs_it_as_usual(tmp_path: Path) -> None:
    overrides = {"c1": {"function": "t_add_one_later"}}
    result, _events, commits = await _run(tmp_path, chain(3, "t_add_one"), overrides=overrides)
    assert result.ok, result.error
    assert result.result == {"c2": 3}
    assert len(commits) >= 2


async def test_a_map_over_an_inline_function(tmp_path: Path) -> None:
    definition = {
        "name": "map-inline",
        "dag": {
            "nodes": [
                {
                    "id": "each",
                    "handler": "map",
                    "config": {
                        "items": list(range(50)),
                        "handler": "python",
                        "config": {"function": "t_add_one", "params": {"value": "{{ item }}"}},
                    },
                }
            ]
        },
    }
    result, _events, _commits = await _run(tmp_path, definition)
    assert result.ok, result.error
    assert result.result["each"]["results"] == list(range(1, 51))
    assert result.result["each"]["failed"] == 0


def test_inline_and_blocking_together_are_refused() -> None:
    with pytest.raises(ValueError, match=r"'t_both'.*blocking=True"):
        function("t_both", inline=True, blocking=True)(add_one_sync)
    assert "t_both" not in function_registry


def test_registering_again_without_inline_takes_it_back() -> None:
    assert function_registry.inline("t_add_one")
    function("t_add_one", replace=True)(add_one)
    assert not function_registry.inline("t_add_one")
    assert function_registry.blocking("t_add_one")
