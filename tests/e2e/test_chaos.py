"""Chaos: executions complete exactly once while workers and orchestrators are SIGKILLed.

200 executions of a 10-node workflow run on 2 orchestrators, 3 workers and a reaper (real
processes on PostgreSQL + Redis), handed over by an API-mode engine in the test. Meanwhile a
random worker or orchestrator is killed with SIGKILL and restarted every fraction of a second.
Then every execution has completed, every node's completion is journalled exactly once, and
the idempotent downstream saw exactly one idempotency key per node: an attempt delivered again
keeps its key, and no node ran under two attempts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from cluster import Cluster

from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

pytestmark = pytest.mark.slow

EXECUTIONS = 200
KILL_BUDGET = 20.0  # seconds of chaos
DEADLINE = 240.0


def workflow(effects: Path) -> dict[str, Any]:
    def node(node_id: str, deps: list[str]) -> dict[str, Any]:
        return {
            "id": node_id,
            "handler": "python",
            "dependencies": deps,
            "config": {
                "function": "crash_effects:keyed_effect",
                # Long enough that the work outlasts 20 kills on a fast, idle machine too
                # (2,000 attempts over 48 slots: at least 12.5 s).
                "params": {"effects": str(effects), "seconds": 0.3},
            },
        }

    middle = [f"m{i}" for i in range(8)]
    nodes = [node("start", []), *(node(m, ["start"]) for m in middle), node("join", middle)]
    return {"name": "chaos-10", "dag": {"nodes": nodes}}


async def _stuck(api: Engine, ids: list[str]) -> str:
    """Where unfinished executions stand: owner, lease and each node that is not done."""
    lines = []
    for eid in ids:
        record = await api.store.get_execution(eid)
        left = time.time() - (record.lease_until or 0)
        lines.append(f"{eid} {record.status} owner={record.owner} lease expired {left:.1f}s ago")
        for run in await api.store.get_node_runs(eid):
            if run.state != "completed":
                lines.append(f"  {run.node_id} {run.state} attempt={run.attempt}")
    return "\n".join(lines)


async def _journal(api: Engine, node_keys: list[str], ids: list[str]) -> str:
    """The journal lines of the nodes behind ``node_keys`` (``<execution>_<node>``)."""
    lines = []
    for key in node_keys:
        eid = next((e for e in ids if key.startswith(e.replace(":", "_"))), None)
        if eid is None:
            continue
        node = key[len(eid) + 1 :]
        for event in await api.store.list_events(eid):
            if event.node_id in (node, None):  # the node's, and the execution's own
                lines.append(
                    f"{event.seq} {event.at:.3f} {eid[:8]} {event.node_id} {event.type}"
                    f" attempt={event.attempt} {event.data}"
                )
    return "\n".join(lines)


@pytest.mark.timeout(420)
async def test_kill_9_of_workers_and_orchestrators_loses_and_repeats_nothing(
    tmp_path: Path, postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    effects = tmp_path / "effects"
    effects.mkdir()
    cluster = Cluster.for_test(postgres_url, redis_server, redis_prefix, tmp_path / "logs")
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    rng = random.Random(5)
    try:
        async with Engine(settings=settings, drive=False) as api:
            cluster.start("reaper", "reaper")
            for i in range(2):
                cluster.start(f"orchestrator-{i}", "orchestrator")
            for i in range(3):
                cluster.start(f"worker-{i}", "worker", "--concurrency", "16")
            definition = await api.submit(workflow(effects))
            ids = [(await api.start_execution(definition, {})).id for _ in range(EXECUTIONS)]

            async def chaos() -> None:
                until = time.monotonic() + KILL_BUDGET
                while time.monotonic() < until:
                    victims = cluster.names("worker") + cluster.names("orchestrator")
                    cluster.kill(rng.choice(victims))
                    await asyncio.sleep(rng.uniform(0.2, 0.8))

            started = time.monotonic()
            killer = asyncio.create_task(chaos())
            try:
                async with asyncio.timeout(DEADLINE):
                    for eid in ids:
                        await api.wait(eid)
            except TimeoutError:
                unfinished = [
                    eid
                    for eid in ids
                    if (await api.store.get_execution(eid)).status not in FINAL_EXECUTION_STATES
                ]
                raise AssertionError(
                    f"{len(unfinished)} executions unfinished after {DEADLINE}s and "
                    f"{cluster.kills} kills\n{await _stuck(api, unfinished[:5])}\n"
                    f"{cluster.log_tail()}"
                ) from None
            finally:
                killer.cancel()
            took = time.monotonic() - started
            print(f"{EXECUTIONS} executions in {took:.1f}s with {cluster.kills} kills")
            assert cluster.kills >= 20

            statuses = Counter([(await api.store.get_execution(eid)).status for eid in ids])
            assert statuses == Counter({ExecutionStatus.COMPLETED: EXECUTIONS})
            for eid in ids:
                events = await api.store.list_events(eid, types=["node.completed"])
                completed = Counter(e.node_id for e in events)
                if set(completed.values()) != {1} or len(completed) != 10:
                    twice = [f"{eid}_{node}" for node, n in completed.items() if n > 1]
                    raise AssertionError(
                        f"{eid} completed {completed}\n{await _journal(api, twice[:2], ids)}"
                    )

            keys = [p.name for p in effects.iterdir() if p.name != "deliveries.log"]
            per_node = Counter(key.rsplit("_", 1)[0] for key in keys)  # drop the attempt number
            assert len(per_node) == EXECUTIONS * 10
            twice = [k for k, n in per_node.items() if n > 1]
            assert not twice, f"ran under two attempts: {twice[:5]}\n" + (
                await _journal(api, twice[:2], ids)
            )
        deliveries = (effects / "deliveries.log").read_text().split()
        assert set(deliveries) == set(keys)  # nothing ran that left no effect
    finally:
        codes = cluster.stop()
        assert all(code == 0 for code in codes.values()), (codes, cluster.log_tail())
