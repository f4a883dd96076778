"""The reference descriptions' API paths in scale-out mode (PostgreSQL and Redis, the API's
engine handing executions to orchestrators): the SwarmLite start and status by name, and the
production-grade orchestrator's dead letter routes on parked tasks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from test_api_scaleout import ADMIN, OPERATOR, VIEWER, Api, api_settings, park, serving


@pytest.fixture
async def api(postgres_url: str, redis_server: str, redis_prefix: str) -> AsyncIterator[Api]:
    async with serving(api_settings(postgres_url, redis_server, redis_prefix)) as running:
        yield running


async def test_swarmlite_start_hands_over_and_status_reads_by_name(api: Api) -> None:
    definition = "workflow_id: handed\ntasks:\n  - id: a\n    type: python\n    depends_on: []\n"
    started = await api.client.post(
        "/workflows/start", json={"definition": definition}, headers=OPERATOR
    )
    assert started.status_code == 202, started.text
    assert started.json()["status"] == "PENDING"  # an orchestrator starts it
    status = await api.client.get("/workflows/handed/status", headers=VIEWER)
    assert status.status_code == 200, status.text
    assert status.json()["execution_id"] == started.json()["execution_id"]


async def test_api_v1_dead_letter_routes_on_parked_tasks(api: Api) -> None:
    first, second = [await park(api.redis, api.names, f"exec-{n}") for n in range(2)]
    listed = await api.client.get("/api/v1/admin/dlq", headers=ADMIN)
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [first, second]
    assert (await api.client.get("/api/v1/admin/dlq", headers=OPERATOR)).status_code == 403
    retried = await api.client.post(f"/api/v1/admin/dlq/{first}/retry", headers=ADMIN)
    assert retried.status_code == 202 and retried.json()["action"] == "retried"
    dropped = await api.client.delete(f"/api/v1/admin/dlq/{second}", headers=ADMIN)
    assert dropped.status_code == 202 and dropped.json()["action"] == "dropped"
    assert (await api.client.get("/api/v1/admin/dlq", headers=ADMIN)).json()["items"] == []
