"""The audit trail through the API, in-process on a real SQLite file: API actions recorded
with who, from where, what and how it ended; GET /v1/audit and /v1/audit/verify (admin);
POST /v1/admin/purge."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from audit_helpers import audited, unaudited
from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.governance.runtime import Governance
from orchestrion.settings import load_settings
from orchestrion.store.audit import AuditFilter

ADMIN, OPERATOR, VIEWER = "adm-secret-1", "op-secret-2", "view-secret-3"
KEYS = f"{ADMIN}:admin,{OPERATOR}:operator,{VIEWER}:viewer"
FLOW = {"name": "api-audit", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


def key_id(key: str) -> str:
    return "key:" + hashlib.sha256(key.encode()).hexdigest()[:8]


def auth(key: str, **headers: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **headers}


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, governance: Governance, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    config: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'api.db'}",
        "rate_limit_per_second": 0,
        "shutdown_grace": 0,
        "api_keys": KEYS,
    }
    settings = load_settings(**{**config, **overrides})
    engine = Engine(settings=settings, governance=governance)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 4711))
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, engine
    finally:
        await engine.stop(0)


async def audit_page(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/v1/audit", params=params, headers=auth(ADMIN))
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_api_actions_are_audited_with_key_id_client_and_outcome(tmp_path: Path) -> None:
    async with serving(tmp_path, audited()) as (client, engine):
        headers = auth(OPERATOR, **{"X-Client-ID": "billing-svc", "X-Request-Source": "ci"})
        submitted = await client.post("/v1/workflow", json=FLOW, headers=headers)
        assert submitted.status_code == 201
        execution_id = submitted.json()["execution_id"]
        trigger = await client.post(f"/v1/workflow/trigger/{execution_id}", headers=headers)
        assert trigger.status_code == 202
        await engine.wait(execution_id, timeout=20)
        missing = await client.delete("/v1/workflows/nope", headers=headers)
        assert missing.status_code == 404
        refused = await client.post("/v1/workflow", json=FLOW, headers=auth(VIEWER))
        assert refused.status_code == 403
        await client.get(f"/v1/workflows/{execution_id}", headers=headers)  # a plain read

        body = await audit_page(client, action="api.")
        api = body["records"]
        assert body["enabled"] is True
        assert [(r["action"], r["outcome"]) for r in api] == [
            ("api.submit_workflow", "201"),
            ("api.trigger_workflow", "202"),
            ("api.cancel_workflow", "404"),
            ("api.submit_workflow", "403"),
        ], "plain reads are not audited; the admin read above is audited after it answered"
        submit, trigger_record, cancel, denied = api
        assert submit["actor"] == key_id(OPERATOR)
        assert submit["execution_id"] == execution_id
        details = submit["details"]
        assert details["client_id"] == "billing-svc"
        assert details["request_source"] == "ci"
        assert details["remote"] == "203.0.113.7"
        assert details["role"] == "operator"
        assert (details["method"], details["route"]) == ("POST", "/v1/workflow")
        assert details["created"]["execution_id"] == execution_id
        assert details["request_id"] == submitted.headers["x-request-id"]
        assert trigger_record["details"]["target"] == {"execution_id": execution_id}
        assert cancel["execution_id"] == "nope"
        assert denied["actor"] == key_id(VIEWER) and denied["details"]["role"] == "viewer"
        everything = await engine.store.list_audit(AuditFilter(limit=10_000))
        assert all(k not in repr(everything) for k in (ADMIN, OPERATOR, VIEWER))
        # The admin read itself was audited, and the transitions of the run are in between.
        reads = (await audit_page(client, action="api.list_audit"))["records"]
        assert reads and reads[0]["actor"] == key_id(ADMIN)
        run = (await audit_page(client, execution_id=execution_id, action="execution."))["records"]
        assert [r["action"] for r in run] == ["execution.started", "execution.completed"]


async def test_audit_endpoints_need_admin_and_page(tmp_path: Path) -> None:
    async with serving(tmp_path, audited()) as (client, engine):
        for i in range(5):
            await engine.audit.record("policy.violation", actor=f"a{i}", at=1000.0 + i)
        for key in (OPERATOR, VIEWER):
            for path in ("/v1/audit", "/v1/audit/verify"):
                assert (await client.get(path, headers=auth(key))).status_code == 403
        assert (await client.get("/v1/audit")).status_code == 401
        first = await audit_page(client, limit=2, action="policy.")
        assert [r["seq"] for r in first["records"]] == [1, 2]
        following = await audit_page(
            client, limit=2, action="policy.", after_seq=first["next_after_seq"]
        )
        assert [r["seq"] for r in following["records"]] == [3, 4]
        window = await audit_page(client, since="1970-01-01T00:16:41Z", until=1003.5)
        assert [r["actor"] for r in window["records"]] == ["a1", "a2", "a3"]
        bad = await client.get("/v1/audit", params={"since": "yesterday"}, headers=auth(ADMIN))
        assert bad.status_code == 422 and "since" in bad.json()["detail"]
        for params in ({"until": "nan"}, {"after_seq": 2**64}, {"limit": 0}):
            refused = await client.get("/v1/audit", params=params, headers=auth(ADMIN))
            assert refused.status_code in (400, 422), (params, refused.text)
        verified = await client.get("/v1/audit/verify", headers=auth(ADMIN))
        assert verified.status_code == 200
        body = verified.json()
        assert body["ok"] is True and body["breaks"] == []
        assert body["head"]["seq"] == body["verified_up_to"] == body["records"]


async def test_verify_says_the_trail_is_off_without_a_key(tmp_path: Path) -> None:
    async with serving(tmp_path, unaudited()) as (client, _):
        await client.post("/v1/workflow", json=FLOW, headers=auth(OPERATOR))
        response = await client.get("/v1/audit/verify", headers=auth(ADMIN))
        assert response.status_code == 409
        assert "ORCHESTRION_AUDIT_KEYS is not set" in response.json()["detail"]
        body = await audit_page(client)
        assert body == {"enabled": False, "records": [], "next_after_seq": None}


async def test_purge_endpoint_deletes_old_executions_and_is_audited(tmp_path: Path) -> None:
    async with serving(tmp_path, audited()) as (client, engine):
        result = await engine.run(FLOW)
        time.sleep(0.05)
        nothing = await client.post("/v1/admin/purge", headers=auth(ADMIN))
        assert nothing.status_code == 409 and "retention.days" in nothing.json()["detail"]
        response = await client.post(
            "/v1/admin/purge", params={"older_than": "10ms"}, headers=auth(ADMIN)
        )
        assert response.status_code == 200, response.text
        assert response.json()["purged"] == 1
        assert (
            await client.get(f"/v1/workflows/{result.execution_id}", headers=auth(ADMIN))
        ).status_code == 404
        (purge,) = (await audit_page(client, action="retention."))["records"]
        assert purge["actor"] == key_id(ADMIN) and purge["details"]["executions"] == 1
        assert (await client.get("/v1/audit/verify", headers=auth(ADMIN))).json()["ok"] is True


@pytest.mark.parametrize("older_than", ["soon", "-1d"])
async def test_purge_refuses_a_bad_duration(tmp_path: Path, older_than: str) -> None:
    async with serving(tmp_path, audited()) as (client, _):
        response = await client.post(
            "/v1/admin/purge", params={"older_than": older_than}, headers=auth(ADMIN)
        )
        assert response.status_code == 422 and "older_than" in response.json()["detail"]


async def test_calls_refused_by_the_rate_limiter_are_not_recorded(tmp_path: Path) -> None:
    async with serving(tmp_path, audited(), rate_limit_per_second=0.01, rate_limit_burst=1) as (
        client,
        engine,
    ):
        statuses = [
            (await client.post("/v1/workflow", json=FLOW, headers=auth(OPERATOR))).status_code
            for _ in range(3)
        ]
        assert statuses == [201, 429, 429]
        api = await engine.audit.list(AuditFilter(action_prefix="api."))
        assert [r.outcome for r in api] == ["201"]
