"""The reaper and long attempts, across real scale-out processes: an attempt, or a
compensation, that runs longer than the reaper's idle timeout on a live worker runs once and
never reaches the dead letter queue (the worker renews its hold on the entry); the task of a
worker killed mid-attempt is still given to another worker."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster, settle, steps_cluster
from redis.asyncio import Redis

from orchestrion.cluster.streams import WORKER_GROUP, StreamNames
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

pytestmark = pytest.mark.slow

STEPS = """\
import time


def _note(log: str, line: str) -> None:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(line + "\\n")


def slow(tag: str, log: str, s: float) -> str:
    _note(log, f"start-{tag}")
    time.sleep(s)
    _note(log, f"end-{tag}")
    return tag


def undo(tag: str, log: str, s: float) -> str:
    _note(log, f"undo-start-{tag}")
    time.sleep(s)
    _note(log, f"undo-end-{tag}")
    return tag


def boom() -> None:
    raise ValueError("boom")
"""

IDLE = 1.0  # the reaper's idle timeout, on every process: the attempts run several times it


def slow(node_id: str, seconds: float, log: Path, *deps: str, undo: float = 0) -> dict[str, Any]:
    node: dict[str, Any] = {
        "id": node_id,
        "handler": "python",
        "dependencies": list(deps),
        "config": {
            "function": "lease_steps.slow",
            "params": {"tag": node_id, "log": str(log), "s": seconds},
        },
    }
    if undo:
        node["compensate"] = {
            "handler": "python",
            "config": {
                "function": "lease_steps.undo",
                "params": {"tag": node_id, "log": str(log), "s": undo},
            },
        }
    return node


async def appears(log: Path, line: str, cluster: Cluster, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not (log.exists() and line in log.read_text().split()):
        assert time.monotonic() < deadline, (line, cluster.log_tail())
        await asyncio.sleep(0.05)


async def test_a_live_worker_keeps_its_long_attempts_and_a_killed_ones_are_reclaimed(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = steps_cluster(
        postgres_url, redis_server, redis_prefix, tmp_path, monkeypatch, "lease_steps", STEPS
    )
    cluster.env["ORCHESTRION_REAPER_IDLE_SECONDS"] = str(IDLE)
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    names = StreamNames(redis_prefix)
    stream = names.tasks("python")
    long_log, killed_log = tmp_path / "long.log", tmp_path / "killed.log"
    boom = {
        "id": "b",
        "handler": "python",
        "dependencies": ["l"],
        "config": {"function": "lease_steps.boom"},
        "retry": {"max_attempts": 1},
    }
    long_flow = {
        "name": "long-on-a-live-worker",
        "on_failure": "compensate",
        "dag": {"nodes": [slow("l", 4 * IDLE, long_log, undo=3 * IDLE), boom]},
    }
    killed_flow = {
        "name": "killed-mid-attempt",
        "dag": {"nodes": [slow("k", 3 * IDLE, killed_log)]},
    }
    redis = Redis.from_url(redis_server)
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "4")
            cluster.start("reaper-0", "reaper")

            long = await api.start_execution(await api.submit(long_flow))
            await appears(long_log, "start-l", cluster)
            await asyncio.sleep(2.5 * IDLE)  # well past the idle timeout, still running
            held = await redis.xpending_range(stream, WORKER_GROUP, "-", "+", 10)
            assert len(held) == 1 and held[0]["times_delivered"] == 1, held
            assert held[0]["time_since_delivered"] < IDLE * 1000, held
            entries = await redis.xrange(stream)
            assert [json.loads(fields[b"m"])["deliveries"] for _, fields in entries] == [1]
            long_end = await settle(api, long.id, cluster, 60)
            long_nodes = {r.node_id: r for r in await api.reads.node_runs(long.id)}
            long_dlq = await redis.xlen(names.dlq)

            killed = await api.start_execution(await api.submit(killed_flow))
            await appears(killed_log, "start-k", cluster)
            cluster.kill("worker-0")  # SIGKILL mid-attempt; a new worker starts at once
            killed_end = await settle(api, killed.id, cluster, 60)
            killed_dlq = await redis.xlen(names.dlq)
    finally:
        await redis.aclose()
        codes = cluster.stop()

    # Longer than the idle timeout on a live worker: the attempt and the compensation ran
    # once each, and nothing was parked.
    assert long_end.status is ExecutionStatus.FAILED, cluster.log_tail()
    assert long_nodes["l"].state is NodeState.COMPENSATED
    assert long_log.read_text().split() == ["start-l", "end-l", "undo-start-l", "undo-end-l"]
    assert long_dlq == 0
    # Killed mid-attempt: its task is reclaimed and runs again on the new worker.
    assert killed_end.status is ExecutionStatus.COMPLETED, cluster.log_tail()
    assert killed_log.read_text().split() == ["start-k", "start-k", "end-k"]
    assert killed_dlq == 0
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())
