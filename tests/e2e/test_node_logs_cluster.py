"""Node logs across real scale-out processes: an orchestrator and two ``orchestrion worker``
processes on PostgreSQL and Redis, logging at WARNING as their operator asked, still keep the
INFO lines python nodes write, per node and attempt, stored while the nodes run."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from cluster import steps_cluster

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from orchestrion.store.base import LogFilter

pytestmark = pytest.mark.slow

STEPS = """\
import logging
import time

log = logging.getLogger("cluster_steps")


def talk(name: str, lines: int, pause: float) -> str:
    for i in range(lines):
        log.info("%s says %d", name, i)
        time.sleep(pause)
    return name
"""
NODES = 6
LINES = 4


def flow() -> dict[str, object]:
    return {
        "name": "cluster-logs",
        "dag": {
            "nodes": [
                {
                    "id": f"n{i}",
                    "handler": "python",
                    "config": {
                        "function": "cluster_steps.talk",
                        "params": {"name": f"n{i}", "lines": LINES, "pause": 0.4},
                    },
                }
                for i in range(NODES)
            ]
        },
    }


async def test_workers_keep_each_nodes_lines_and_send_them_live(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = steps_cluster(
        postgres_url, redis_server, redis_prefix, tmp_path, monkeypatch, "cluster_steps", STEPS
    )
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "3")
            cluster.start("worker-1", "worker", "--concurrency", "3")
            record = await api.start_execution(await api.submit(flow()))
            deadline = time.monotonic() + 60
            live = False
            while True:
                status = (await api.reads.execution(record.id)).status
                lines = await api.reads.node_logs(LogFilter(record.id, limit=1000))
                if lines and status is ExecutionStatus.RUNNING:
                    live = True  # stored while the nodes still ran
                if status is ExecutionStatus.COMPLETED:
                    break
                assert status is not ExecutionStatus.FAILED, cluster.log_tail()
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.1)
            lines = await api.reads.node_logs(LogFilter(record.id, limit=1000))
    finally:
        codes = cluster.stop()
    assert live, cluster.log_tail()
    for i in range(NODES):
        mine = [line for line in lines if line.node_id == f"n{i}"]
        assert [line.message for line in mine] == [f"n{i} says {j}" for j in range(LINES)]
        assert {(line.attempt, line.level, line.logger) for line in mine} == {
            (1, "INFO", "cluster_steps")
        }
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())
