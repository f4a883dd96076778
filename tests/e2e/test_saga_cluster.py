"""Compensation (saga) across real scale-out processes: an orchestrator, a worker and a reaper
on PostgreSQL and Redis undo the nodes that completed, in reverse order, when an execution
times out or a node fails; a node whose action failed, or was still running at the timeout,
is not undone, and a compensation that fails is shown on its node and in the execution."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from cluster import settle, steps_cluster

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

pytestmark = pytest.mark.slow

STEPS = """\
import time


def sleepy(s: float, tag: str, log: str) -> str:
    time.sleep(s)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"done-{tag}\\n")
    return tag


def comp(tag: str, log: str) -> str:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"comp-{tag}\\n")
    return tag


def broken_comp(tag: str, log: str) -> str:
    raise ValueError(f"comp {tag} broke")


def boom() -> None:
    raise ValueError("boom")
"""


def step(node_id: str, seconds: float, log: Path, *deps: str, comp: str = "comp") -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "python",
        "dependencies": list(deps),
        "config": {
            "function": "saga_steps.sleepy",
            "params": {"s": seconds, "tag": node_id, "log": str(log)},
        },
        "compensate": {
            "handler": "python",
            "config": {
                "function": f"saga_steps.{comp}",
                "params": {"tag": node_id, "log": str(log)},
            },
        },
    }


async def test_timeout_and_failure_compensate_only_completed_nodes(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = steps_cluster(
        postgres_url, redis_server, redis_prefix, tmp_path, monkeypatch, "saga_steps", STEPS
    )
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    timed_log = tmp_path / "timed.log"
    failed_log = tmp_path / "failed.log"
    timed = {
        "name": "saga-timeout",
        "timeout": "1s",
        "on_failure": "compensate",
        "dag": {"nodes": [step("a", 0, timed_log), step("s", 3, timed_log, "a")]},
    }
    boom = {
        "id": "d",
        "handler": "python",
        "dependencies": ["c"],
        "config": {"function": "saga_steps.boom"},
        "retry": {"max_attempts": 1},
        "compensate": {
            "handler": "python",
            "config": {"function": "saga_steps.comp", "params": {"tag": "d", "log": "x"}},
        },
    }
    failing = {
        "name": "saga-failure",
        "on_failure": "compensate",
        "dag": {
            "nodes": [
                step("a", 0, failed_log, comp="broken_comp"),
                step("b", 0, failed_log, "a"),
                step("b2", 0, failed_log, "a"),
                step("c", 0, failed_log, "b", "b2"),
                boom,
            ]
        },
    }
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "4")
            cluster.start("reaper-0", "reaper")
            first = await api.start_execution(await api.submit(timed))
            second = await api.start_execution(await api.submit(failing))
            ended = await settle(api, first.id, cluster, 60)
            timed_nodes = {r.node_id: r for r in await api.reads.node_runs(first.id)}
            failed_end = await settle(api, second.id, cluster, 60)
            failed_nodes = {r.node_id: r for r in await api.reads.node_runs(second.id)}
            await asyncio.sleep(3)  # s's abandoned action ends on the worker meanwhile
    finally:
        codes = cluster.stop()

    # The timeout: a completed is undone; s, still running, is failed and abandoned, not undone.
    assert ended.status is ExecutionStatus.FAILED, cluster.log_tail()
    assert ended.error is not None and ended.error["category"] == "timeout"
    assert timed_nodes["a"].state is NodeState.COMPENSATED
    assert timed_nodes["s"].state is NodeState.FAILED
    assert timed_nodes["s"].compensation is None
    assert "comp-a" in timed_log.read_text().split()
    assert "comp-s" not in timed_log.read_text().split()

    # The failure: d's action failed, so it stays failed; the others are undone in reverse order,
    # and a's broken compensation is shown on a and in the execution's error.
    assert failed_end.status is ExecutionStatus.FAILED
    comps = [line for line in failed_log.read_text().split() if line.startswith("comp-")]
    assert comps[0] == "comp-c" and sorted(comps[1:]) == ["comp-b", "comp-b2"]
    assert failed_nodes["d"].state is NodeState.FAILED
    assert failed_nodes["d"].error is not None and "boom" in failed_nodes["d"].error["message"]
    assert {n: failed_nodes[n].state for n in ("b", "b2", "c")} == {
        n: NodeState.COMPENSATED for n in ("b", "b2", "c")
    }
    a = failed_nodes["a"]
    assert a.state is NodeState.COMPLETED and a.compensation == "failed"
    assert a.error is not None and "comp a broke" in a.error["message"]
    assert failed_end.error is not None and failed_end.error["nodes"] == ["d"]
    assert failed_end.error["compensation_failed"] == ["a"]
    assert "compensation failed: a" in failed_end.error["message"]
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())
