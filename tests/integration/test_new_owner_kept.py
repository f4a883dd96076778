"""An orchestrator not yet seen beating keeps the executions it drives.

Each orchestrator looks at the others' heartbeats once a heartbeat period, and takes an owner
missing from that look for dead, even while its lease runs: that is how a killed one's work
is taken over at once. An orchestrator that started after the last look, and claimed an
execution since, is missing from it too, yet alive: its execution must not be taken from it
(the commits are fenced, so nothing would be lost, but the work in flight would be done
again and the new owner's turn refused). The lease says when it claimed.

Real PostgreSQL and Redis; the two orchestrators are engines in this process, the first one
with a heartbeat period long enough that its look stays the one made at its start.
"""

from __future__ import annotations

import asyncio

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from scaleout import scaleout_settings

pytestmark = pytest.mark.slow

ASKS = {"name": "asks", "dag": {"nodes": [{"id": "ask", "handler": "approval"}]}}


async def test_an_execution_claimed_after_the_last_look_stays_with_its_owner(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    early = load_settings(
        database_url=postgres_url,
        redis_url=redis_server,
        redis_prefix=redis_prefix,
        heartbeat_seconds=60,
    )
    late = scaleout_settings(postgres_url, redis_server, redis_prefix)
    # The first starts (and looks at the heartbeats) before the second exists.
    async with (
        Engine(settings=early, resume=False) as first,
        Engine(settings=late, resume=False) as second,
    ):
        record = await second.start_execution(ASKS)
        for _ in range(200):
            stored = await second.store.get_execution(record.id)
            if stored.status is ExecutionStatus.WAITING:
                break
            await asyncio.sleep(0.02)
        seen = first._ownership.cluster.live_owners()  # type: ignore[union-attr]
        assert seen is not None and second.owner not in seen  # looked before it began
        await first._recovery.resume_unfinished()
        assert first.live_machine(record.id) is None
        assert (await first.store.get_execution(record.id)).owner == second.owner
        await second.decide(record.id, "ask", approved=True, by="ops")
        result = await second.wait(record.id, timeout=10)
    assert result.status is ExecutionStatus.COMPLETED, result.error
