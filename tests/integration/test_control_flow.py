"""condition, delay and approval nodes in the engine, on the in-memory store and SQLite."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError, InvalidTransition
from orchestrion.store.base import ExecutionRecord
from scaleout import engine_for


@pytest.fixture(params=["memory", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'c.db'}"


@pytest.fixture
async def engine(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with engine_for(database_url, request) as engine:
        yield engine


def flow(*nodes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "control", "dag": {"nodes": list(nodes)}}


def noop(node_id: str, deps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "handler": "noop", "dependencies": deps or [], **extra}


def router(mode: str = "first") -> dict[str, Any]:
    return {
        "id": "route",
        "handler": "condition",
        "dependencies": ["score"],
        "config": {
            "mode": mode,
            "cases": [
                {"when": "score.output > 0.8", "then": ["fast"]},
                {"when": "score.output > 0.5", "then": ["review"]},
            ],
            "default": ["reject"],
        },
    }


@pytest.mark.parametrize(
    ("score", "mode", "ran"),
    [
        (0.9, "first", {"fast"}),
        (0.6, "first", {"review"}),
        (0.1, "first", {"reject"}),
        (0.9, "all", {"fast", "review"}),
    ],
)
async def test_condition_runs_chosen_branches_and_skips_the_rest(
    engine: Engine, score: float, mode: str, ran: set[str]
) -> None:
    result = await engine.run(
        flow(
            noop("score", config={"value": score}),
            router(mode),
            noop("fast", ["route"]),
            noop("review", ["route"]),
            noop("reject", ["route"]),
            noop("after_fast", ["fast"]),
            noop("merge", ["fast", "review", "reject"], trigger_rule="none_failed"),
        )
    )
    assert result.ok, result.error
    branches = {"fast", "review", "reject"}
    assert {n for n in branches if result.nodes[n].state is NodeState.COMPLETED} == ran
    for node in branches - ran:
        assert result.nodes[node].state is NodeState.SKIPPED
    assert (result.nodes["after_fast"].state is NodeState.COMPLETED) == ("fast" in ran)
    assert result.nodes["merge"].state is NodeState.COMPLETED
    skipped = await engine.store.list_events(result.execution_id, types=["node.skipped"])
    assert {e.data["reason"] for e in skipped if e.data and e.node_id in branches} <= {
        "branch_not_taken"
    }


async def test_delay_waits_durably_without_a_worker(engine: Engine) -> None:
    started = time.monotonic()
    result = await engine.run(
        flow(
            {"id": "wait", "handler": "delay", "config": {"seconds": "200ms"}}, noop("x", ["wait"])
        )
    )
    assert result.ok, result.error
    assert time.monotonic() - started >= 0.2
    waiting = await engine.store.list_events(result.execution_id, types=["node.waiting"])
    assert len(waiting) == 1


async def test_delay_survives_a_restart_and_fires_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'delay.db'}"
    definition = flow(
        {"id": "wait", "handler": "delay", "config": {"seconds": 0.5}}, noop("x", ["wait"])
    )
    async with Engine(url) as first:
        record = await first.start_execution(definition)
        while (await first.node_states(record.id))["wait"] is not NodeState.WAITING:
            await asyncio.sleep(0.01)
        started = time.monotonic()
    async with Engine(url) as second:
        result = await second.wait(record.id, timeout=5)
        elapsed = time.monotonic() - started
    assert result.ok
    assert elapsed < 1.0  # the timer kept its original deadline, it did not start over
    events = await second_events(url, record.id)
    assert events.count("node.woken") == 1


async def second_events(url: str, execution_id: str) -> list[str]:
    async with Engine(url, resume=False) as engine:
        return [e.type for e in await engine.store.list_events(execution_id)]


async def test_approval_waits_then_approve_completes_with_the_decision(engine: Engine) -> None:
    record = await engine.start_execution(
        flow(
            {"id": "ok", "handler": "approval", "config": {"message": "ship it?"}},
            noop("ship", ["ok"]),
        )
    )
    while (await engine.result(record.id)).status is not ExecutionStatus.WAITING:
        await asyncio.sleep(0.01)
    with pytest.raises(InvalidTransition):
        await engine.decide(record.id, "ship", approved=True)
    await engine.decide(record.id, "ok", approved=True, by="ada", comment="looks good")
    result = await engine.wait(record.id, timeout=5)
    assert result.ok
    output = result.nodes["ok"].output
    assert output["approved"] is True and output["decided_by"] == "ada"


async def test_reject_fails_the_node_with_who_and_why(engine: Engine) -> None:
    record = await engine.start_execution(
        flow({"id": "ok", "handler": "approval"}, noop("ship", ["ok"]))
    )
    while (await engine.node_states(record.id))["ok"] is not NodeState.WAITING:
        await asyncio.sleep(0.01)
    await engine.decide(record.id, "ok", approved=False, by="bob", comment="not today")
    result = await engine.wait(record.id, timeout=5)
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["ok"].error
    assert error is not None and error["message"] == "rejected by bob: not today"
    assert result.nodes["ship"].state is NodeState.SKIPPED


@pytest.mark.parametrize(("on_timeout", "ok"), [("approve", True), ("reject", False)])
async def test_approval_timeout_decides(engine: Engine, on_timeout: str, ok: bool) -> None:
    result = await engine.run(
        flow(
            {
                "id": "ok",
                "handler": "approval",
                "config": {"timeout": "100ms", "on_timeout": on_timeout},
            }
        ),
        timeout=5,
    )
    assert result.ok is ok


async def test_approval_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'approval.db'}"
    async with Engine(url) as first:
        record = await first.start_execution(
            flow({"id": "ok", "handler": "approval"}, noop("ship", ["ok"], config={"value": 1}))
        )
        while (await first.node_states(record.id))["ok"] is not NodeState.WAITING:
            await asyncio.sleep(0.01)
    async with Engine(url) as second:
        await second.decide(record.id, "ok", approved=True, by="carol")
        result = await second.wait(record.id, timeout=5)
    assert result.ok and result.nodes["ship"].output == 1


def test_a_condition_may_only_choose_its_children() -> None:
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    bad = flow(
        noop("score", config={"value": 1}),
        {**router(), "config": {"cases": [{"when": "ghost.output > 1", "then": ["elsewhere"]}]}},
        noop("fast", ["route"]),
        noop("elsewhere"),
    )
    with pytest.raises(DefinitionError) as caught:
        load_definition(bad)
    messages = [str(issue) for issue in caught.value.issues]
    assert any("'elsewhere' is not a child of 'route'" in m for m in messages), messages
    assert any("ghost" in m for m in messages), messages


async def test_map_runs_a_handler_per_item_in_order_with_a_limit(engine: Engine) -> None:
    result = await engine.run(
        flow(
            noop("source", config={"value": list(range(50))}),
            {
                "id": "each",
                "handler": "map",
                "dependencies": ["source"],
                "config": {
                    "items": "{{ source.output }}",
                    "handler": "noop",
                    "config": {"value": "{{ item * 2 }}", "sleep": 0.001},
                    "concurrency": 5,
                },
            },
        )
    )
    assert result.ok, result.error
    output = result.nodes["each"].output
    assert output["results"] == [i * 2 for i in range(50)]
    assert output["count"] == 50 and output["failed"] == 0


async def test_map_item_failure_fails_the_node_or_is_collected(engine: Engine) -> None:
    def mapper(policy: str) -> dict[str, Any]:
        return {
            "id": "each",
            "handler": "map",
            "retry": {"max_attempts": 1},
            "config": {
                "items": [1, 2, 3],
                "handler": "python",
                "config": {"function": "fail", "params": {"message": "item {{ item }} broke"}},
                "on_item_failure": policy,
            },
        }

    failed = await engine.run(flow(mapper("fail")))
    assert failed.status is ExecutionStatus.FAILED
    error = failed.nodes["each"].error
    assert error is not None and "broke" in error["message"] and "item" in error["message"]
    collected = await engine.run(flow(mapper("collect")))
    assert collected.ok
    assert collected.nodes["each"].output["failed"] == 3


def test_map_names_an_unknown_inner_handler() -> None:
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    with pytest.raises(DefinitionError, match="teleport"):
        load_definition(
            flow({"id": "m", "handler": "map", "config": {"items": [], "handler": "teleport"}})
        )


@pytest.mark.parametrize("inner", ["approval", "human_approval", "delay", "timer", "map"])
@pytest.mark.parametrize("outer", ["map", "foreach"])
def test_a_map_refuses_an_item_handler_that_cannot_run_per_item(outer: str, inner: str) -> None:
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    with pytest.raises(DefinitionError) as refused:
        load_definition(
            flow({"id": "m", "handler": outer, "config": {"items": [1], "handler": inner}})
        )
    [issue] = refused.value.issues
    assert (issue.node, issue.field, issue.code) == ("m", "config.handler", "map_item_handler")
    assert "sub-workflow" in issue.message
    if inner != "map":
        assert f"handler '{inner}' waits" in issue.message


@pytest.mark.parametrize(
    ("inner", "code"),
    [
        ("approval", "map_item_handler"),
        ("map", "map_item_handler"),
        ("teleport", "unknown_handler"),
    ],
)
async def test_an_override_of_a_map_item_handler_is_checked_as_the_definition(
    engine: Engine, inner: str, code: str
) -> None:
    mapped = flow({"id": "m", "handler": "map", "config": {"items": [1], "handler": "noop"}})
    with pytest.raises(DefinitionError) as refused:
        await engine.start_execution(mapped, overrides={"m": {"handler": inner}})
    [issue] = refused.value.issues
    assert (issue.node, issue.field, issue.code) == ("m", "config.handler", code)
    assert inner in issue.message
    fine = await engine.start_execution(
        mapped, overrides={"m": {"handler": "noop", "config": {"value": 1}}}
    )
    assert (await engine.wait(fine.id, timeout=10)).ok


def test_a_foreach_names_an_unknown_inner_handler() -> None:
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    with pytest.raises(DefinitionError, match="teleport"):
        load_definition(
            flow({"id": "m", "handler": "foreach", "config": {"items": [], "handler": "teleport"}})
        )


CHILD = {
    "name": "child-flow",
    "inputs": {"n": {"type": "integer", "required": True}},
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "double",
                "handler": "noop",
                "dependencies": ["input"],
                "config": {"value": "{{ input.n * 2 }}", "sleep": 0.05},
            },
            {"id": "output", "handler": "output", "dependencies": ["double"]},
        ]
    },
}


def parent_flow(**config: Any) -> dict[str, Any]:
    return flow(
        {
            "id": "call",
            "handler": "workflow",
            "config": {"workflow": "child-flow", "inputs": {"n": 21}, **config},
        },
        noop("after", ["call"], config={"value": "{{ call.output.result.double }}"}),
    )


async def test_workflow_node_runs_a_child_and_takes_its_result(engine: Engine) -> None:
    await engine.submit(CHILD)
    result = await engine.run(parent_flow(), timeout=10)
    assert result.ok, result.error
    output = result.nodes["call"].output
    assert result.nodes["after"].output == 42
    child = await engine.store.get_execution(output["child_execution_id"])
    assert child.parent_execution_id == result.execution_id
    assert child.parent_node_id == "call"
    assert child.status is ExecutionStatus.COMPLETED


async def test_a_failed_child_fails_the_node(engine: Engine) -> None:
    await engine.submit(CHILD)
    result = await engine.run(
        flow(
            {
                "id": "call",
                "handler": "workflow",
                "retry": {"max_attempts": 1},
                "config": {"workflow": "child-flow", "inputs": {}},
            }
        ),
        timeout=10,
    )
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["call"].error
    assert error is not None and "required input 'n'" in error["message"]


async def test_an_unknown_child_workflow_is_a_clear_error(engine: Engine) -> None:
    result = await engine.run(
        flow(
            {
                "id": "call",
                "handler": "workflow",
                "retry": {"max_attempts": 1},
                "config": {"workflow": "nope"},
            }
        ),
        timeout=10,
    )
    error = result.nodes["call"].error
    assert error is not None and "no stored workflow 'nope'" in error["message"]


async def test_cancelling_the_parent_cancels_the_child(engine: Engine) -> None:
    slow_child = {
        "name": "slow-child",
        "dag": {
            "nodes": [
                {
                    "id": "wait",
                    "handler": "python",
                    "config": {"function": "sleep", "params": {"seconds": 5}},
                }
            ]
        },
    }
    await engine.submit(slow_child)
    record = await engine.start_execution(
        flow({"id": "call", "handler": "workflow", "config": {"workflow": "slow-child"}})
    )
    waiting: list[Any] = []
    deadline = time.monotonic() + 5
    while not waiting:
        assert time.monotonic() < deadline, await engine.result(record.id)
        await asyncio.sleep(0.01)
        waiting = await engine.store.list_events(record.id, types=["node.waiting"])
    child_id = waiting[0].data["child_execution_id"]
    await engine.cancel(record.id)
    child = await engine.wait(child_id, timeout=5)
    assert child.status is ExecutionStatus.CANCELLED


async def test_parent_and_child_survive_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nested.db'}"
    slow = {
        **CHILD,
        "name": "child-flow",
        "dag": {
            "nodes": [
                {"id": "input", "handler": "input"},
                {
                    "id": "double",
                    "handler": "noop",
                    "dependencies": ["input"],
                    "config": {"value": "{{ input.n * 2 }}", "sleep": 0.4},
                },
            ]
        },
    }
    async with Engine(url) as first:
        await first.submit(slow)
        record = await first.start_execution(parent_flow())
        while (await first.node_states(record.id))["call"] is not NodeState.WAITING:
            await asyncio.sleep(0.01)
    async with Engine(url) as second:
        result = await second.wait(record.id, timeout=10)
    assert result.ok, result.error
    assert result.nodes["after"].output == 42


async def test_map_progress_is_visible_while_it_runs(engine: Engine) -> None:
    record = await engine.start_execution(
        flow(
            {
                "id": "each",
                "handler": "map",
                "config": {
                    "items": list(range(20)),
                    "handler": "noop",
                    "config": {"sleep": 0.02},
                    "concurrency": 2,
                },
            }
        )
    )
    seen: list[dict[str, int]] = []
    while (await engine.result(record.id)).status.value != "completed":
        progress = engine.node_progress(record.id).get("each")
        if progress:
            seen.append(progress)
        await asyncio.sleep(0.02)
    assert any(0 < p["done"] < p["total"] == 20 for p in seen), seen
    assert engine.node_progress(record.id) == {}  # dropped once the execution ends


async def test_map_can_run_a_sub_workflow_per_item(engine: Engine) -> None:
    await engine.submit(CHILD)
    result = await engine.run(
        flow(
            {
                "id": "each",
                "handler": "map",
                "config": {
                    "items": [1, 2, 3],
                    "handler": "workflow",
                    "config": {"workflow": "child-flow", "inputs": {"n": "{{ item }}"}},
                    "concurrency": 2,
                },
            }
        ),
        timeout=10,
    )
    assert result.ok, result.error
    outputs = result.nodes["each"].output["results"]
    assert [o["result"]["double"] for o in outputs] == [2, 4, 6]
    for output in outputs:
        child = await engine.store.get_execution(output["child_execution_id"])
        assert child.parent_execution_id == result.execution_id


async def _map_of_slow_children(engine: Engine, items: int) -> ExecutionRecord:
    """A map of ``items`` child executions run at once, each sleeping 5 s."""
    wait = {
        "id": "wait",
        "handler": "python",
        "config": {"function": "sleep", "params": {"seconds": 5}},
    }
    await engine.submit({"name": "slow-item", "dag": {"nodes": [wait]}})
    config = {
        "items": list(range(items)),
        "concurrency": items,
        "handler": "workflow",
        "config": {"workflow": "slow-item"},
    }
    return await engine.start_execution(flow({"id": "each", "handler": "map", "config": config}))


async def test_a_map_of_sub_workflows_shows_its_progress_while_they_run(engine: Engine) -> None:
    # Every child runs for seconds: the map's items are counted from its start, not from
    # the end of the first one.
    record = await _map_of_slow_children(engine, 3)
    deadline = time.monotonic() + 4
    while engine.node_progress(record.id).get("each") is None:
        assert time.monotonic() < deadline, "no progress while the children run"
        await asyncio.sleep(0.02)
    assert engine.node_progress(record.id)["each"] == {"done": 0, "total": 3, "failed": 0}
    await engine.cancel(record.id)
    await engine.wait(record.id, timeout=5)


async def test_a_cancel_during_the_children_s_start_cancels_every_child(engine: Engine) -> None:
    # Cancelled as soon as the first child exists, the map is still creating the others:
    # none of them may run on without its parent.
    record = await _map_of_slow_children(engine, 16)
    deadline = time.monotonic() + 5
    while not [e for e in (await engine.list_executions())[0] if e.parent_execution_id]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0)
    await engine.cancel(record.id)
    assert (await engine.wait(record.id, timeout=5)).status is ExecutionStatus.CANCELLED
    executions, _ = await engine.list_executions()
    children = [e for e in executions if e.parent_execution_id == record.id]
    assert children
    for child in children:
        result = await engine.wait(child.id, timeout=4)
        assert result.status is ExecutionStatus.CANCELLED, child.id


async def test_cancelling_a_map_of_sub_workflows_cancels_the_children(engine: Engine) -> None:
    record = await _map_of_slow_children(engine, 2)
    children: list[Any] = []
    deadline = time.monotonic() + 5
    while len(children) < 2:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
        executions, _ = await engine.list_executions()
        children = [e for e in executions if e.parent_execution_id == record.id]
    await engine.cancel(record.id)
    for child in children:
        result = await engine.wait(child.id, timeout=5)
        assert result.status is ExecutionStatus.CANCELLED
