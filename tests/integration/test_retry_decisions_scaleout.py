"""Scale-out: a retry, handed over by the API to the orchestrator, keeps the branch a condition
did not take (real PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import PermanentNodeError
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from scaleout import scaleout_engine, scaleout_settings


@function("so_fails_first_attempt", replace=True)
def so_fails_first_attempt(ctx: NodeContext) -> str:
    if ctx.attempt == 1:
        raise PermanentNodeError("first attempt fails")
    return "ok"


ROUTED: dict[str, Any] = {
    "name": "routed",
    "dag": {
        "nodes": [
            {
                "id": "route",
                "handler": "condition",
                "config": {"cases": [{"when": "true", "then": ["left"]}], "default": ["right"]},
            },
            {"id": "left", "handler": "noop", "dependencies": ["route"]},
            {
                "id": "flaky",
                "handler": "python",
                "dependencies": ["left"],
                "retry": {"max_attempts": 1},
                "config": {"function": "so_fails_first_attempt"},
            },
            {"id": "right", "handler": "noop", "dependencies": ["route"]},
            {"id": "right_tail", "handler": "noop", "dependencies": ["right"]},
        ]
    },
}


async def settled(api: Engine, execution_id: str, check: Any) -> ExecutionResult:
    """The API hands a retry over and answers at once: poll until the orchestrator is done."""
    deadline = time.monotonic() + 30
    while True:
        result = await api.result(execution_id)
        if result.status is ExecutionStatus.COMPLETED and check(result):
            return result
        assert time.monotonic() < deadline, f"not reached: {result}"
        await asyncio.sleep(0.05)


async def test_retry_through_the_api_keeps_the_branch_not_taken(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix),
        Engine(settings=settings, drive=False) as api,
    ):
        record = await api.start_execution(ROUTED, {})
        failed = await api.wait(record.id, timeout=30)
        assert failed.status is ExecutionStatus.FAILED
        await api.retry(record.id)
        done = await settled(api, record.id, lambda r: True)
        assert done.nodes["flaky"].state is NodeState.COMPLETED
        assert done.nodes["right"].state is NodeState.SKIPPED
        assert done.nodes["right"].attempt == 0
        assert done.nodes["right_tail"].state is NodeState.SKIPPED

        await api.retry(record.id, from_node="left")
        rerun = await settled(api, record.id, lambda r: r.nodes["left"].attempt == 2)
        assert rerun.nodes["right"].attempt == 0


async def test_a_decision_handed_over_checks_the_approvers_first(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    """The API process checks the decider before it forwards the decision to the driver."""
    from orchestrion.engine.deciders import Decider, DecisionRefused

    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    gated = {
        "name": "gated",
        "dag": {"nodes": [{"id": "sign", "handler": "approval", "config": {"approvers": ["cfo"]}}]},
    }
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix),
        Engine(settings=settings, drive=False) as api,
    ):
        record = await api.start_execution(gated, {})
        deadline = time.monotonic() + 30
        while (await api.result(record.id)).nodes["sign"].state is not NodeState.WAITING:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        intern = Decider("key:00000001", "operator", "intern")
        try:
            await api.decide(record.id, "sign", approved=True, by="cfo", decider=intern)
        except DecisionRefused as exc:
            assert "intern" in str(exc)
        else:
            raise AssertionError("the intern decided")
        cfo = Decider("key:00000002", "operator", "cfo")
        await api.decide(record.id, "sign", approved=True, decider=cfo)
        done = await settled(api, record.id, lambda r: True)
        assert done.nodes["sign"].output["decided_by"] == "cfo"
