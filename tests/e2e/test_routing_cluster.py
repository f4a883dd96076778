"""Routing in scale-out, through real processes: an API, two orchestrators and a worker on
PostgreSQL and Redis. The DORA example started by its event escalates and waits for the CFO or
the CRO; the orchestrator driving it is killed with SIGKILL, the other takes it over, the
approval goes through the API, and the run ends with each notice journalled once and
confirmed."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from cluster import Cluster
from test_api_server import REFERENCE, free_port

pytestmark = pytest.mark.slow

DORA = (REFERENCE / "dora-compliance-assessment.yaml").read_text(encoding="utf-8")
KEYS = "k-alice:operator:alice,k-carol:operator:carol"
ALICE, CAROL = {"Authorization": "Bearer k-alice"}, {"Authorization": "Bearer k-carol"}


async def _owner(database_url: str, execution_id: str, cluster: Cluster) -> str | None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(database_url)
    try:
        owner = await conn.fetchval("SELECT owner FROM executions WHERE id = $1", execution_id)
    finally:
        await conn.close()
    for name in cluster.names("orchestrator"):
        if owner is not None and owner.split(":")[1] == str(cluster.procs[name].pid):
            return name
    return None


def _journal(client: httpx.Client, execution_id: str, kind: str) -> list[dict[str, Any]]:
    events = client.get(f"/v1/workflows/{execution_id}/events", params={"limit": 500})
    return [e["data"] for e in events.json()["items"] if e["type"] == kind]


async def test_a_takeover_after_sigkill_keeps_each_notice_once_and_the_gate_by_identity(
    postgres_url: str, redis_server: str, redis_prefix: str, tmp_path: Path
) -> None:
    cluster = Cluster.for_test(
        postgres_url,
        redis_server,
        redis_prefix,
        tmp_path / "logs",
        ORCHESTRION_TEAMS_FILE=str(REFERENCE.parent / "teams.yaml"),
        ORCHESTRION_API_KEYS=KEYS,
    )
    port = free_port()
    try:
        cluster.start("orchestrator-0", "orchestrator")
        cluster.start("orchestrator-1", "orchestrator")
        cluster.start("worker-0", "worker", "--concurrency", "4")
        cluster.start("reaper-0", "reaper")  # /health is ok only with one
        cluster.start("api", "serve", "--host", "127.0.0.1", "--port", str(port))
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=ALICE) as api:
            for _ in range(300):
                try:
                    if api.get("/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            posted = api.post(
                "/v1/workflow", content=DORA, headers={"Content-Type": "application/yaml"}
            )
            assert posted.status_code == 201, posted.text
            sent = api.post("/v1/events/policy.updated", json={"id": "q4", "documents": []})
            assert sent.status_code == 202, sent.text
            [started] = sent.json()["executions"]
            execution_id = started["execution_id"]
            deadline = time.monotonic() + 60
            while len(_journal(api, execution_id, "execution.notice")) < 2:
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.1)
            owner = await _owner(postgres_url, execution_id, cluster)
            assert owner is not None, cluster.log_tail()
            cluster.kill(owner)  # SIGKILL, restarted as a supervisor would
            approve = f"/v1/workflows/{execution_id}/nodes/routing-2/approve"
            refused = api.post(approve, json={}, headers=CAROL)
            assert refused.status_code == 403, refused.text
            deadline = time.monotonic() + 60
            while (answer := api.post(approve, json={})).status_code != 202:
                assert time.monotonic() < deadline, (answer.text, cluster.log_tail())
                await asyncio.sleep(0.5)  # until another orchestrator took the run over
            deadline = time.monotonic() + 60
            while (body := api.get(f"/v1/workflows/{execution_id}").json())["status"] not in (
                "COMPLETED",
                "FAILED",
            ):
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.1)
            notices = _journal(api, execution_id, "execution.notice")
            deadline = time.monotonic() + 30
            while (
                len({d["key"] for d in _journal(api, execution_id, "execution.notice_delivered")})
                < 2
            ):
                assert time.monotonic() < deadline, cluster.log_tail()
                await asyncio.sleep(0.1)
    finally:
        cluster.stop()
    assert body["status"] == "FAILED" and body["error"]["category"] == "success_criteria"
    assert body["nodes"]["routing-2"]["output"]["decided_by"] == "alice"
    assert [(n["kind"], n["node"]) for n in notices] == [
        ("escalation", "routing-1"),
        ("approval_required", "routing-2"),
    ]  # the takeover journalled none again
