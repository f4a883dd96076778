"""The audit trail in scale-out mode on real PostgreSQL and Redis: the API (an engine that
does not drive) and two orchestrators write one chain, which verifies."""

from __future__ import annotations

import asyncio
import hashlib
import time

import httpx

from audit_helpers import audited
from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.store.audit import AuditFilter
from scaleout import scaleout_engine, scaleout_settings

FLOW = {
    "name": "scaled-audit",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}
OPERATOR = "so-operator"


async def test_api_and_orchestrators_write_one_verifiable_chain(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    settings = scaleout_settings(
        postgres_url,
        redis_server,
        redis_prefix,
        api_keys=f"{OPERATOR}:operator",
        rate_limit_per_second=0,
        shutdown_grace=0,
    )
    async with (
        scaleout_engine(
            postgres_url, redis_server, redis_prefix, workers=2, governance=audited()
        ) as first,
        scaleout_engine(postgres_url, redis_server, redis_prefix, governance=audited()) as second,
    ):
        api_engine = Engine(settings=settings, drive=False, governance=audited())
        await api_engine.start()
        try:
            app = create_app(api_engine, settings)
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                    headers = {"Authorization": f"Bearer {OPERATOR}", "X-Client-ID": "load"}

                    async def start() -> str:
                        submitted = await client.post("/v1/workflow", json=FLOW, headers=headers)
                        execution_id: str = submitted.json()["execution_id"]
                        trigger = f"/v1/workflow/trigger/{execution_id}"
                        assert (await client.post(trigger, headers=headers)).status_code == 202
                        return execution_id

                    ids = await asyncio.gather(*(start() for _ in range(12)))
                    deadline = time.monotonic() + 30
                    for execution_id in ids:
                        while (
                            await api_engine.store.get_execution(execution_id)
                        ).status.value != "completed":
                            assert time.monotonic() < deadline, execution_id
                            await asyncio.sleep(0.05)
        finally:
            await api_engine.stop(0)
        records = await first.audit.list(AuditFilter(limit=10_000))
        verification = await second.audit.verify()
        assert verification.ok, verification.breaks
        api = [r for r in records if r.action.startswith("api.")]
        assert len(api) == 24
        assert {r.actor for r in api} == {
            "key:" + hashlib.sha256(OPERATOR.encode()).hexdigest()[:8]
        }
        engines = {r.actor for r in records if r.action.startswith("execution.")}
        assert engines <= {f"engine:{first.owner}", f"engine:{second.owner}"}
        completed = [r for r in records if r.action == "execution.completed"]
        assert sorted(r.execution_id or "" for r in completed) == sorted(ids)
