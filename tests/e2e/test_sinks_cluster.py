"""Event sinks in scale-out: two orchestrators on PostgreSQL and Redis, one holding the
publisher lease; SIGKILL it while executions run and the other takes over publishing. Every
transition in the journal reaches the webhook (at least once), and the outbox ends empty."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from cluster import Cluster

from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from sink_helpers import Receiver

pytestmark = pytest.mark.slow

FLOW = {
    "name": "pulse",
    "triggers": [
        {"type": "scheduled", "name": "every_second", "schedule": "* * * * * *", "catchup": "all"}
    ],
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


async def _query(database_url: str, sql: str) -> list[tuple[object, ...]]:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(database_url)
    try:
        return [tuple(row) for row in await conn.fetch(sql)]
    finally:
        await conn.close()


async def _holder(database_url: str, cluster: Cluster) -> str | None:
    """The orchestrator whose process holds the publisher lease (owner ``host:pid:random``)."""
    rows = await _query(database_url, "SELECT owner FROM leases WHERE name = 'publisher'")
    owner = str(rows[0][0]) if rows else None
    for name in cluster.names("orchestrator"):
        if owner is not None and owner.split(":")[1] == str(cluster.procs[name].pid):
            return name
    return None


async def test_the_publisher_moves_to_another_orchestrator_when_one_is_killed(
    postgres_url: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    receiver = Receiver()
    sinks = {
        "sinks": [{"name": "hook", "type": "webhook", "url": receiver.url}],
        "delivery": {"lease": 1, "interval": 0.05},
    }
    cluster = Cluster.for_test(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path / "logs",
        ORCHESTRION_SINKS=json.dumps(sinks),
        ORCHESTRION_SCHEDULER_INTERVAL="0.2",
    )
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    try:
        async with Engine(settings=settings, drive=False) as api:
            await api.submit(FLOW)
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("orchestrator-1", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "4")
            deadline = time.monotonic() + 30
            holder = None
            while holder is None or not receiver.received:
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.2)
                holder = await _holder(postgres_url, cluster)
            await asyncio.sleep(1.5)
            cluster.kill(holder)  # SIGKILL, and restarted as a supervisor would
            # Until the next holder has published more of the executions that start every
            # second, however busy the machine is.
            published = len(receiver.events())
            deadline = time.monotonic() + 60
            while len(receiver.events()) < published + 20:
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.2)
            stopped = cluster.stop()  # graceful: the publisher drains what is left
        journal = await _query(
            postgres_url,
            "SELECT id FROM events WHERE type LIKE 'node.%' OR type LIKE 'execution.%'",
        )
        left = await _query(postgres_url, "SELECT COUNT(*) FROM outbox")
        owed = await _query(postgres_url, "SELECT COUNT(*) FROM sink_deliveries")
    finally:
        cluster.stop()
        receiver.close()
    assert all(code == 0 for code in stopped.values() if code is not None), stopped
    received = {event["id"] for event in receiver.events()}
    ids = {str(row[0]) for row in journal}
    assert len(ids) >= 20, cluster.log_tail()
    assert ids - received == set(), cluster.log_tail()
    assert left == [(0,)] and owed == [(0,)]
