"""A compensation runs once when the orchestrator driving its execution dies, through real
processes: two orchestrators, a worker and a reaper on PostgreSQL and Redis. The orchestrator
that owns the execution is killed with SIGKILL while a compensation runs on the worker; the
other one takes the execution over and must not send that compensation again, whether its
result comes after the takeover or was already waiting when the takeover began. Each run of a
compensation writes a line to a file, so the test counts what the worker really ran."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster, steps_cluster

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

pytestmark = pytest.mark.slow

STEPS = """\
import asyncio


async def asleepy(secs: float, tag: str, log: str) -> str:
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"start-{tag}\\n")
    await asyncio.sleep(secs)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"end-{tag}\\n")
    return tag


def boom() -> None:
    raise ValueError("boom")
"""


def _workflow(log: Path, secs: float) -> dict[str, Any]:
    def undone(node_id: str) -> dict[str, Any]:
        return {
            "id": node_id,
            "handler": "noop",
            "compensate": {
                "handler": "python",
                "config": {
                    "function": "comp_steps.asleepy",
                    "params": {"secs": secs, "tag": node_id, "log": str(log)},
                },
            },
        }

    return {
        "name": "cmp",
        "on_failure": "compensate",
        "dag": {
            "nodes": [
                undone("a"),
                undone("b"),
                {
                    "id": "c",
                    "handler": "python",
                    "dependencies": ["a", "b"],
                    "config": {"function": "comp_steps.boom"},
                    "retry": {"max_attempts": 1},
                },
            ]
        },
    }


def _lines(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


async def _owner(api: Engine, execution_id: str, cluster: Cluster) -> str:
    record = await api.reads.execution(execution_id)
    assert record.owner is not None, cluster.log_tail()
    for name in cluster.names("orchestrator"):
        if record.owner.split(":")[1] == str(cluster.procs[name].pid):
            return name
    raise AssertionError(f"no orchestrator is {record.owner}")


async def _until(check: Any, within: float, cluster: Cluster) -> None:
    deadline = time.monotonic() + within
    while not await check():
        assert time.monotonic() < deadline, cluster.log_tail()
        await asyncio.sleep(0.1)


async def _run(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    secs: float,
    result_first: bool,
) -> None:
    cluster = steps_cluster(
        postgres_url, redis_server, redis_prefix, tmp_path, monkeypatch, "comp_steps", STEPS
    )
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    log = tmp_path / "comp.log"
    killed = ""
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("orchestrator-1", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "4")
            cluster.start("reaper-0", "reaper")
            started = await api.start_execution(await api.submit(_workflow(log, secs)))

            async def compensating() -> bool:
                return any(line.startswith("start-") for line in _lines(log))

            await _until(compensating, 60, cluster)
            first = next(line for line in _lines(log) if line.startswith("start-"))[6:]
            owner = await _owner(api, started.id, cluster)
            [other] = [name for name in cluster.names("orchestrator") if name != owner]
            if result_first:
                # Nobody may take the execution over before the compensation's result sits
                # in the dead owner's inbox: the takeover then recovers with it waiting.
                cluster.procs[other].send_signal(signal.SIGSTOP)
            killed = owner
            cluster.procs[owner].send_signal(signal.SIGKILL)
            cluster.procs[owner].wait(10)
            if result_first:

                async def ended() -> bool:
                    return f"end-{first}" in _lines(log)

                await _until(ended, 60, cluster)
                await asyncio.sleep(2)  # the reaper hands the dead owner's inbox over
                cluster.procs[other].send_signal(signal.SIGCONT)

            async def settled() -> bool:
                record = await api.reads.execution(started.id)
                return record.status in (ExecutionStatus.FAILED, ExecutionStatus.COMPLETED)

            await _until(settled, 90, cluster)
            record = await api.reads.execution(started.id)
            nodes = {r.node_id: r for r in await api.reads.node_runs(started.id)}
            journal = await api.store.list_events(started.id, types=["node.compensated"])
            await asyncio.sleep(secs + 2)  # a second run, if one was sent, would show now
    finally:
        cluster.procs.pop(killed, None)  # killed on purpose: its exit code says nothing
        codes = cluster.stop()

    lines = _lines(log)
    assert record.status is ExecutionStatus.FAILED, cluster.log_tail()
    assert {n: nodes[n].state for n in ("a", "b")} == {
        "a": NodeState.COMPENSATED,
        "b": NodeState.COMPENSATED,
    }, cluster.log_tail()
    # Each compensation ran exactly once on the worker, and is journalled once.
    assert sorted(lines) == ["end-a", "end-b", "start-a", "start-b"], (lines, cluster.log_tail())
    assert sorted(e.node_id or "" for e in journal) == ["a", "b"]
    assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())


async def test_a_compensation_running_when_its_orchestrator_dies_runs_once(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _run(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path,
        monkeypatch,
        secs=6,
        result_first=False,
    )


async def test_a_compensation_result_waiting_at_the_takeover_is_applied_not_rerun(
    postgres_url: str,
    redis_server: str,
    redis_prefix: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _run(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path,
        monkeypatch,
        secs=3,
        result_first=True,
    )
