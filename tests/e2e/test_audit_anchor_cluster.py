"""Scale-out: an ``orchestrion orchestrator`` process (PostgreSQL + Redis, with a worker
process) anchors the trail it writes, at start, every interval and at shutdown; erasing the
trail on PostgreSQL afterwards fails ``orchestrion audit verify`` on its anchor."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cluster import Cluster

from audit_helpers import AUDIT_ENV, KEY, audited
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from orchestrion.store.audit_anchor import Checkpoint

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
FLOW = {
    "name": "clustered-anchor",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


def checkpoints(path: Path) -> list[Checkpoint]:
    if not path.exists():
        return []
    return [Checkpoint.parse(line) for line in path.read_text().splitlines() if line]


async def test_an_orchestrator_anchors_the_trail_it_writes(
    postgres_url: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    anchor = tmp_path / "anchor.jsonl"
    policy = tmp_path / "governance.yaml"
    policy.write_text(
        f"version: 1\naudit:\n  anchor:\n    file: {anchor}\n    interval_seconds: 0.2\n"
    )
    cluster = Cluster.for_test(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path / "logs",
        ORCHESTRION_GOVERNANCE_FILE=str(policy),
        **AUDIT_ENV,
    )
    settings = load_settings(
        database_url=postgres_url, redis_url=redis_server, redis_prefix=redis_prefix
    )
    try:
        # This process hands executions over and writes no checkpoint (no anchor in its policy).
        async with Engine(settings=settings, drive=False, governance=audited()) as api:
            cluster.start("orchestrator-0", "orchestrator")
            cluster.start("worker-0", "worker", "--concurrency", "4")
            deadline = time.monotonic() + 60
            while not checkpoints(anchor):
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.05)
            definition = await api.submit(FLOW)
            ids = [(await api.start_execution(definition, {})).id for _ in range(3)]
            for execution_id in ids:
                while (await api.store.get_execution(execution_id)).status.value != "completed":
                    assert time.monotonic() < deadline, cluster.log_tail()
                    await asyncio.sleep(0.05)
            head = await api.audit.head()
            assert head is not None
            while max(c.seq for c in checkpoints(anchor)) < head.seq:  # the periodic one
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.05)
            stopping = time.time()
            codes = cluster.stop()
            assert codes["orchestrator-0"] == 0, cluster.log_tail()
    finally:
        cluster.stop()

    written = checkpoints(anchor)
    assert written[-1].at >= stopping and written[-1].seq == head.seq  # at shutdown
    assert all(c.valid({"k1": KEY}) for c in written)

    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.update({**AUDIT_ENV, "ORCHESTRION_GOVERNANCE_FILE": str(policy), "COLUMNS": "250"})
    verify = [*CLI, "audit", "verify", "--db", postgres_url]
    ok = subprocess.run(verify, capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr

    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("DELETE FROM audit")
        await conn.execute("DELETE FROM audit_head")
    finally:
        await conn.close()
    erased = subprocess.run(verify, capture_output=True, text=True, env=env, timeout=120)
    assert erased.returncode == 1, erased.stdout + erased.stderr
    assert "the trail is empty but the journal holds" in erased.stderr
    assert f"anchor holds a checkpoint of record {head.seq}" in erased.stderr
