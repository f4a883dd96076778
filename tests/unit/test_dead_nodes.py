"""Dead-lettered nodes derived from the store: which nodes count, drops, reruns, filters."""

from __future__ import annotations

import time
from typing import Any

import pytest

from audit_helpers import audited
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.dead_nodes import ExhaustedNodes
from orchestrion.engine.facade import Engine
from orchestrion.errors import ExecutionNotFound
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.store.audit import AuditFilter

BROKEN: set[str] = set()


@function("dead_nodes_probe", replace=True)
def dead_nodes_probe(ctx: NodeContext) -> str:
    if ctx.node_id in BROKEN:
        raise RuntimeError(f"{ctx.node_id} is broken")
    return "ok"


def flow(name: str = "probe") -> dict[str, Any]:
    retry = {"max_attempts": 2, "initial_delay": 0.001, "retry_on": ["all"]}
    node = {"handler": "python", "retry": retry, "config": {"function": "dead_nodes_probe"}}
    return {
        "name": name,
        "dag": {
            "nodes": [
                {"id": "a", **node},
                {"id": "b", **node},
                {"id": "after", "handler": "noop", "dependencies": ["a"]},
            ]
        },
    }


@pytest.fixture(autouse=True)
def _broken() -> None:
    BROKEN.clear()
    BROKEN.update({"a", "b"})


async def failed(engine: Engine, name: str = "probe") -> str:
    record = await engine.start_execution(flow(name), {})
    result = await engine.wait(record.id, timeout=10)
    assert result.status is ExecutionStatus.FAILED
    return record.id


async def test_every_node_that_failed_for_good_is_listed_and_nothing_else() -> None:
    async with Engine("memory://") as engine:
        execution_id = await failed(engine)
        nodes = await ExhaustedNodes(engine.store).list()
        assert [n.id for n in nodes] == sorted(
            [f"{execution_id}.a", f"{execution_id}.b"],
            key=lambda i: next(n.failed_at for n in nodes if n.id == i),
        )
        assert {n.attempt for n in nodes} == {2}
        assert {n.workflow for n in nodes} == {"probe"}
        assert all("is broken" in n.message for n in nodes)
        for missing in (f"{execution_id}.after", f"{execution_id}.zz", "no-such.a", "a.b.c", ""):
            with pytest.raises(ExecutionNotFound):
                await ExhaustedNodes(engine.store).get(missing)


async def test_a_drop_hides_one_failure_and_a_later_failure_is_listed_again() -> None:
    async with Engine("memory://") as engine:
        execution_id = await failed(engine)
        dead = ExhaustedNodes(engine.store)
        await dead.drop(f"{execution_id}.a")
        assert [n.node_id for n in await dead.list()] == ["b"]
        with pytest.raises(ExecutionNotFound):
            await dead.drop(f"{execution_id}.a")  # handled already

        # Rerun from a, still broken: its new failure is a new dead letter.
        await engine.retry(execution_id, from_node="a")
        assert (await engine.wait(execution_id, timeout=10)).status is ExecutionStatus.FAILED
        again = await dead.get(f"{execution_id}.a")
        assert again.attempt == 3

        BROKEN.clear()
        await engine.retry(execution_id, from_node="a")
        done = await engine.wait(execution_id, timeout=10)
        # A rerun from a node runs the execution's other failed nodes again too (b).
        assert done.status is ExecutionStatus.COMPLETED
        assert await dead.list() == []


async def test_filters_by_workflow_and_failure_time() -> None:
    async with Engine("memory://") as engine:
        first = await failed(engine, "one")
        middle = time.time()
        second = await failed(engine, "two")
        dead = ExhaustedNodes(engine.store)
        assert {n.execution_id for n in await dead.list("one")} == {first}
        assert {n.execution_id for n in await dead.list(since=middle)} == {second}
        assert await dead.list("three") == []


async def test_a_drop_is_audited_so_the_trail_still_verifies() -> None:
    async with Engine("memory://", governance=audited()) as engine:
        execution_id = await failed(engine)
        await engine.reads.dead_nodes().drop(f"{execution_id}.a")
        checked = await engine.audit.verify()
        assert checked.ok, checked.breaks
        records = await engine.audit.list(AuditFilter(limit=1000))
        (drop,) = [r for r in records if r.action == "control.requested"]
        assert drop.execution_id == execution_id
        assert drop.details is not None and drop.details["verb"] == "dead_letter_drop"
