"""Schedules in scale-out: two orchestrators on PostgreSQL and Redis, one holding the scheduler
lease; SIGKILL it while it fires and the other takes over, with no tick lost and none
doubled."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
from cluster import Cluster

from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from orchestrion.store.base import ExecutionFilter
from orchestrion.store.schedules import firing_key

pytestmark = pytest.mark.slow

FLOW = {
    "name": "pulse",
    "triggers": [
        {"type": "scheduled", "name": "every_second", "schedule": "* * * * * *", "catchup": "all"}
    ],
    "dag": {"nodes": [{"id": "beat", "handler": "noop"}]},
}
FAST = {"ORCHESTRION_SCHEDULER_INTERVAL": "0.2", "ORCHESTRION_SCHEDULER_LEASE_SECONDS": "2"}


async def _holder(database_url: str, cluster: Cluster) -> str | None:
    """The orchestrator whose process holds the scheduler lease (owner ids are
    ``host:pid:random``: engine/ownership.py)."""
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(database_url)
    try:
        owner = await conn.fetchval("SELECT owner FROM leases WHERE name = 'scheduler'")
    finally:
        await conn.close()
    for name in cluster.names("orchestrator"):
        if owner is not None and owner.split(":")[1] == str(cluster.procs[name].pid):
            return name
    return None


async def test_orchestrators_killed_while_firing_lose_no_tick_and_double_none(
    postgres_url: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    cluster = Cluster.for_test(postgres_url, redis_server, redis_prefix, tmp_path / "logs", **FAST)
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    try:
        async with Engine(settings=settings, drive=False) as api:
            await api.submit(FLOW)
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("orchestrator-1", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "4")
            for _ in range(2):
                deadline = time.monotonic() + 30
                holder = None
                while holder is None:
                    assert time.monotonic() < deadline, cluster.log_tail()
                    await asyncio.sleep(0.2)
                    holder = await _holder(postgres_url, cluster)
                await asyncio.sleep(2.5)
                cluster.kill(holder)  # SIGKILL, and restarted as a supervisor would
            await asyncio.sleep(5.0)
            cluster.stop()
            firings = await api.store.list_firings("pulse:every_second", 1000)
            page, _ = await api.store.list_executions(ExecutionFilter(limit=1000))
    finally:
        cluster.stop()
    ticks = sorted(f.tick_at for f in firings)
    assert len(ticks) >= 8, cluster.log_tail()
    assert ticks == [ticks[0] + i for i in range(len(ticks))], cluster.log_tail()
    # The stop may come in the middle of a pass: the ticks it recorded and had not started
    # yet stay pending, durably, for the next pass. Only the newest ticks may be left so.
    started = sorted(f.tick_at for f in firings if f.status.value == "started")
    pending = sorted(f.tick_at for f in firings if f.status.value == "pending")
    assert len(started) + len(pending) == len(ticks), cluster.log_tail()
    assert not pending or pending[0] > started[-1], (started, pending)
    assert len(pending) <= 3, (started, pending)
    keys = Counter(
        r.idempotency_key for r in page if (r.idempotency_key or "").startswith("schedule:")
    )
    assert set(keys.values()) == {1}
    # Every started tick made its one execution; a pending one at most one (its start may
    # have been made before the stop, and is found by the next pass through its key).
    assert len(started) <= len(keys) <= len(ticks)
    assert all(firing_key("pulse:every_second", tick) in keys for tick in started)
