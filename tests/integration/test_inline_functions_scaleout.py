"""Python functions registered with ``inline=True`` in scale-out mode (real PostgreSQL and
Redis): the orchestrator runs them in its turn, as it runs ``noop`` and ``condition``, so a
chain of them never crosses Redis, while a function not declared inline still goes to a
worker; with the orchestrator's inline attempts off, a worker runs them without a task."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.functions import function, function_registry
from scaleout import scaleout_engine


@pytest.fixture(autouse=True)
def functions() -> Any:
    @function("so_inline_add", replace=True, inline=True)
    async def add(value: int) -> int:
        return value + 1

    @function("so_not_inline", replace=True)
    def where(ctx: NodeContext, value: int) -> dict[str, Any]:
        return {"value": value, "attempt": ctx.attempt}

    yield
    function_registry.unregister("so_inline_add")
    function_registry.unregister("so_not_inline")


def _flow() -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [
        {
            "id": "c0",
            "handler": "python",
            "config": {"function": "so_inline_add", "params": {"value": 0}},
        }
    ]
    nodes += [
        {
            "id": f"c{i}",
            "handler": "python",
            "dependencies": [f"c{i - 1}"],
            "config": {
                "function": "so_inline_add",
                "params": {"value": f"{{{{ c{i - 1}.output }}}}"},
            },
        }
        for i in range(1, 6)
    ]
    nodes.append(
        {
            "id": "last",
            "handler": "python",
            "dependencies": ["c5"],
            "config": {"function": "so_not_inline", "params": {"value": "{{ c5.output }}"}},
        }
    )
    return {"name": "inline-functions", "dag": {"nodes": nodes}}


@pytest.mark.parametrize("orchestrator_inline", [True, False])
async def test_inline_functions_run_without_a_worker_task(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    orchestrator_inline: bool,
) -> None:
    # A loaded machine can take the process off its core for more than the turn's 5 ms in
    # the middle of the chain: give the turn time enough that only the handlers decide.
    monkeypatch.setattr("orchestrion.engine.loop._INLINE_BUDGET", 5.0)
    settings = {"inline_attempts": orchestrator_inline}
    async with scaleout_engine(
        postgres_url, redis_server, redis_prefix, settings=settings
    ) as engine:
        result = await engine.run(_flow(), timeout=30)
        events = await engine.store.list_events(result.execution_id)
        answered = sum(worker.completed for worker in engine.workers)  # type: ignore[attr-defined]
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.outputs["last"] == {"value": 6, "attempt": 1}
    # The orchestrator's turn ran the chain; only the last node went to a worker. Without
    # inline attempts every node reached a worker, which ran the inline ones at once.
    assert answered == (1 if orchestrator_inline else 7)
    for node in [f"c{i}" for i in range(6)] + ["last"]:
        kinds = [e.type for e in events if e.node_id == node]
        assert kinds == ["node.queued", "node.started", "node.completed"], (node, kinds)
