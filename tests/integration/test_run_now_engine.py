"""Nodes the engine runs within its own turn (``HandlerSpec.run_now``), on a real SQLite file.

A SQLite commit never suspends, so a chain of such nodes could hold the event loop from its
first node to its last; these tests check that everything else still gets its turn meanwhile
(other tasks, a cancel) and that retries and the journal behave as for any other node. Such
nodes run inline, before their turn's commit: a chain of them shares a few commits, and a
node that does I/O after them still finds them all committed before it runs.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import TransientNodeError
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry

FLAKY: dict[str, int] = {}


def chain(length: int) -> dict[str, Any]:
    """``length`` noop nodes in a line, each passing its predecessor's output on."""
    nodes: list[dict[str, Any]] = [{"id": "c0", "handler": "noop", "config": {"value": 0}}]
    nodes += [
        {
            "id": f"c{i}",
            "handler": "noop",
            "dependencies": [f"c{i - 1}"],
            "config": {"value": f"{{{{ c{i - 1}.output }}}}"},
        }
        for i in range(1, length)
    ]
    return {"name": f"chain-{length}", "dag": {"nodes": nodes}}


def _flaky_now(ctx: NodeContext, _config: Any) -> Any:
    FLAKY[ctx.node_id] = FLAKY.get(ctx.node_id, 0) + 1
    if ctx.attempt < 3:
        raise TransientNodeError(f"attempt {ctx.attempt} refused")
    return {"attempt": ctx.attempt}


async def _flaky(ctx: NodeContext, config: Any) -> Any:
    return _flaky_now(ctx, config)


def _registry() -> HandlerRegistry:
    registry = HandlerRegistry(builtin_specs())
    registry.register(HandlerSpec(name="flaky", run=_flaky, run_now=_flaky_now))
    return registry


def _committed_states(database: Path, execution_id: str) -> dict[str, str]:
    """Node states as another process sees them: a connection of its own, committed rows."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute(
            "SELECT node_id, state FROM node_runs WHERE execution_id = ?", (execution_id,)
        ).fetchall()
    finally:
        connection.close()
    return dict(rows)


async def test_an_io_node_after_inline_nodes_finds_them_committed(tmp_path: Path) -> None:
    database = tmp_path / "o.db"
    seen: dict[str, str] = {}

    async def probe(ctx: NodeContext, _config: Any) -> Any:  # no run_now: a task, as I/O is
        seen.update(_committed_states(database, ctx.execution_id))
        await asyncio.sleep(0)
        return {"probed": len(seen)}

    registry = _registry()
    registry.register(HandlerSpec(name="probe", run=probe))
    definition = chain(30)
    nodes = definition["dag"]["nodes"]
    nodes.append({"id": "probe", "handler": "probe", "dependencies": ["c29"]})
    nodes += [
        {"id": "after0", "handler": "noop", "dependencies": ["probe"]},
        {"id": "after1", "handler": "noop", "dependencies": ["after0"]},
    ]
    async with Engine(f"sqlite:///{database}", registry=registry) as engine:
        record = await engine.start_execution(definition)
        result = await engine.wait(record.id, timeout=30)
    assert result.ok, result.error
    # Every node before the probe ran inline, yet was durable before the probe (which could
    # have called out to the world) started; so was the probe's own dispatch.
    assert {f"c{i}" for i in range(30)} <= {n for n, state in seen.items() if state == "completed"}
    assert seen["probe"] == "queued"
    assert "after0" not in seen
    assert _committed_states(database, record.id)["after1"] == "completed"


async def test_a_chain_of_inline_nodes_shares_a_few_commits(tmp_path: Path) -> None:
    commits: list[list[str]] = []

    def listener(_execution_id: str, records: list[Any]) -> None:  # once per commit
        commits.append([f"{r.type} {r.node}" for r in records])

    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        engine.add_listener(listener)
        record = await engine.start_execution(chain(100))
        result = await engine.wait(record.id, timeout=30)
        events = await engine.store.list_events(record.id)
    assert result.ok, result.error
    assert result.result == {"c99": 0}
    # One commit per node before inline runs; now one per 5 ms of them (a slow machine may
    # need several), and the journal is the same as ever, node by node, in order.
    assert len(commits) < 25, len(commits)
    journal = [(e.type, e.node_id) for e in events if e.node_id is not None]
    expected = [
        (kind, f"c{i}")
        for i in range(100)
        for kind in ("node.queued", "node.started", "node.completed")
    ]
    assert journal == expected
    assert [line for batch in commits for line in batch if " c" in line] == [
        f"{kind} {node}" for kind, node in expected
    ]


async def test_other_tasks_run_while_a_long_chain_of_noops_runs(tmp_path: Path) -> None:
    ticks = 0
    stop = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not stop.is_set():
            ticks += 1
            await asyncio.sleep(0)

    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        stored = await engine.submit(chain(3000))
        record = await engine.start_execution(stored)
        ticking = asyncio.create_task(ticker())
        result = await engine.wait(record.id, timeout=120)
        during = ticks
        stop.set()
        await ticking
    assert result.ok
    assert result.result == {"c2999": 0}  # c0's value, passed down the whole chain
    # Without the engine loop's budget, the ticker would get in once or twice in all.
    assert during >= 10, during


async def test_a_cancel_gets_in_during_a_chain_of_noops(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'o.db'}") as engine:
        stored = await engine.submit(chain(20_000))
        record = await engine.start_execution(stored)
        while (await engine.node_states(record.id)).get("c50") is not NodeState.COMPLETED:
            await asyncio.sleep(0.001)
        await engine.cancel(record.id)
        result = await engine.wait(record.id, timeout=60)
        states = await engine.node_states(record.id)
    assert result.status is ExecutionStatus.CANCELLED
    assert states.get("c19999") is not NodeState.COMPLETED


async def test_a_node_run_in_the_turn_is_retried_and_journaled(tmp_path: Path) -> None:
    FLAKY.clear()
    definition = {
        "name": "flaky-now",
        "dag": {
            "nodes": [
                {
                    "id": "try",
                    "handler": "flaky",
                    "retry": {"max_attempts": 3, "initial_delay": 0.01, "jitter": "none"},
                },
                {"id": "after", "handler": "noop", "dependencies": ["try"]},
            ]
        },
    }
    async with Engine(f"sqlite:///{tmp_path / 'o.db'}", registry=_registry()) as engine:
        record = await engine.start_execution(definition)
        result = await engine.wait(record.id, timeout=10)
        events = await engine.store.list_events(record.id)
    assert result.ok, result.error
    assert FLAKY == {"try": 3}
    kinds = [(e.node_id, e.type, e.attempt) for e in events if e.node_id == "try"]
    assert kinds == [
        ("try", "node.queued", 1),
        ("try", "node.started", 1),
        ("try", "node.retry_scheduled", 1),
        ("try", "node.queued", 2),
        ("try", "node.started", 2),
        ("try", "node.retry_scheduled", 2),
        ("try", "node.queued", 3),
        ("try", "node.started", 3),
        ("try", "node.completed", 3),
    ]


async def test_a_node_with_a_heavy_template_is_not_run_in_the_turn(tmp_path: Path) -> None:
    """A light template (a read, a comparison) runs inline; a heavy one (here a filter) is
    dispatched as a task, its queueing committed first, and renders in a render thread."""
    threads: dict[str, str] = {}
    commits: list[list[str]] = []

    def where_now(ctx: NodeContext, config: Any) -> Any:
        threads[ctx.node_id] = threading.current_thread().name
        return config

    async def where(ctx: NodeContext, config: Any) -> Any:
        return where_now(ctx, config)

    registry = _registry()
    registry.register(HandlerSpec(name="where", run=where, run_now=where_now))
    definition = {
        "name": "weights",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop", "config": {"value": {"n": 3}}},
                {
                    "id": "light",
                    "handler": "where",
                    "dependencies": ["a"],
                    "when": "a.output.n > 1",
                    "config": {"n": "{{ a.output.n }}"},
                },
                {
                    "id": "heavy",
                    "handler": "where",
                    "dependencies": ["a"],
                    "config": {"n": "{{ a.output.n | string }}"},
                },
                {
                    "id": "choose",
                    "handler": "condition",
                    "dependencies": ["light", "heavy"],
                    "config": {"cases": [{"when": "heavy.output.n | int > 2", "then": ["end"]}]},
                },
                {"id": "end", "handler": "noop", "dependencies": ["choose"]},
            ]
        },
    }

    def listener(_execution_id: str, records: list[Any]) -> None:
        commits.append([f"{r.type} {r.node}" for r in records])

    async with Engine(f"sqlite:///{tmp_path / 'o.db'}", registry=registry) as engine:
        engine.add_listener(listener)
        record = await engine.start_execution(definition)
        result = await engine.wait(record.id, timeout=30)
    assert result.ok, result.error
    assert result.result == {"end": None}
    assert threads["light"] == threading.current_thread().name
    assert threads["heavy"].startswith("orchestrion-render")

    def same_commit(node: str) -> bool:
        return any(
            f"node.queued {node}" in batch and f"node.completed {node}" in batch
            for batch in commits
        )

    assert same_commit("light")  # run in the turn that queued it
    assert not same_commit("heavy")
    assert not same_commit("choose")  # its case has a filter: a task too
    assert same_commit("end")
