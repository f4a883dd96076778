"""The workflow routes declared on the application's own router (api/flat_routes.py) route
every request as the included router did: two applications over one engine, one as served
and one with the router included by FastAPI, answer the same requests alike (status, every
header, body), leave the same audit records and count the same HTTP metrics; and their
OpenAPI documents are the same, byte for byte.

Requests on and around the routes: each method on each path, trailing slashes, prefixes of
the paths, the other routes the paths lead to (results, stats, validate, the compatibility
surfaces), unknown paths, and refusals before routing (no key, the viewer role).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from prometheus_client import generate_latest

from audit_helpers import audited
from orchestrion.api import app as app_module
from orchestrion.api import create_app
from orchestrion.api.app import api_context
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings
from orchestrion.store.audit import AuditFilter

ADMIN, OPERATOR, VIEWER = "adm-flat-key-0001", "op-flat-key-00002", "view-flat-key-003"
KEYS = f"{ADMIN}:admin,{OPERATOR}:operator,{VIEWER}:viewer"
FLOW = {"name": "flat-routes", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}


def included(app: FastAPI, router: APIRouter) -> None:
    app.include_router(router)


@contextlib.asynccontextmanager
async def two_apps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, FastAPI, FastAPI, Engine]]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'flat.db'}",
        rate_limit_burst=1_000_000,
        rate_limit_unauthenticated_burst=1_000_000,
        shutdown_grace=0,
        api_keys=KEYS,
    )
    engine = Engine(settings=settings, governance=audited())
    await engine.start()
    served = create_app(engine, settings)
    with monkeypatch.context() as patch:
        patch.setattr(app_module, "include_flat", included)
        reference = create_app(engine, settings)
    try:
        async with (
            served.router.lifespan_context(served),
            reference.router.lifespan_context(reference),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=served), base_url="http://a"
            ) as one,
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=reference), base_url="http://a"
            ) as other,
        ):
            yield one, other, served, reference, engine
    finally:
        await engine.stop(0)


def test_the_openapi_document_is_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'doc.db'}", api_keys=KEYS)
    served = create_app(settings=settings)
    monkeypatch.setattr(app_module, "include_flat", included)
    reference = create_app(settings=settings)
    assert json.dumps(served.openapi()) == json.dumps(reference.openapi())


async def test_requests_are_routed_as_by_the_included_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with two_apps(tmp_path, monkeypatch) as (one, other, served, reference, engine):
        operator = {"Authorization": f"Bearer {OPERATOR}"}
        submitted = await one.post("/v1/workflow", json=FLOW, headers=operator)
        assert submitted.status_code == 201, submitted.text
        done = submitted.json()["execution_id"]
        started = await one.post(f"/v1/workflow/trigger/{done}", json={}, headers=operator)
        assert started.status_code == 202, started.text
        await engine.wait(done, timeout=30)
        paths = [
            f"/v1/workflows/{done}",
            f"/v1/workflows/{done}/",
            f"/v1/workflows/{done}/results",
            f"/v1/workflows/{done}/results/",
            f"/v1/workflows/{done}/nodes",
            f"/v1/workflows/{done}/cancel",
            "/v1/workflows",
            "/v1/workflows/",
            "/v1/workflow",
            "/v1/workflow/",
            "/v1/workflow/validate",
            "/v1/workflow/trigger",
            "/v1/workflow/trigger/",
            "/v1/workflow/trigger/no-such-execution",
            f"/v1/workflow/trigger/{done}",
            "/v1/workflows/no-such-execution",
            "/v1/stats/executions",
            "/v1/definitions",
            "/v1/nothing-here",
            "/workflow",
            f"/workflows/{done}",
            f"/api/v1/workflows/{done}",
            "/ui/",
            "/",
        ]
        who = [
            {"Authorization": f"Bearer {VIEWER}"},
            {"Authorization": f"Bearer {ADMIN}"},
            {},
        ]
        counted = (_metrics(served), _metrics(reference))  # the set-up went to one only
        seen = 0
        for path in paths:
            for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS"):
                for headers in who:
                    seen += 1
                    headers = {**headers, "X-Request-ID": f"flat-{seen}"}
                    body: dict[str, Any] = {}
                    if method in ("POST", "PUT"):
                        body = {"json": {"not": "a definition"}}
                    before = await engine.audit.list(AuditFilter(limit=100_000))
                    a = await one.request(method, path, headers=headers, **body)
                    middle = await engine.audit.list(AuditFilter(limit=100_000))
                    b = await other.request(method, path, headers=headers, **body)
                    after = await engine.audit.list(AuditFilter(limit=100_000))
                    where = (method, path, headers)
                    assert a.status_code == b.status_code, (where, a.text, b.text)
                    assert _headers(a) == _headers(b), where
                    assert a.content == b.content, where
                    assert _records(before, middle) == _records(middle, after), where
        assert _delta(counted[0], _metrics(served)) == _delta(counted[1], _metrics(reference))


_COUNTING = frozenset({"ratelimit-remaining", "ratelimit-reset", "retry-after"})


def _headers(response: httpx.Response) -> list[tuple[str, str]]:
    return [(k, "<n>" if k in _COUNTING else v) for k, v in response.headers.multi_items()]


def _records(before: list[Any], after: list[Any]) -> list[tuple[Any, ...]]:
    return [
        (r.action, r.actor, r.execution_id, r.node_id, r.outcome, r.details)
        for r in after[len(before) :]
        if r.action.startswith("api.")
    ]


def _metrics(app: FastAPI) -> dict[str, float]:
    """The HTTP request counts of ``app``, by series."""
    text = generate_latest(api_context(app).metrics.registry).decode()
    counts = {}
    for line in text.splitlines():
        if line.startswith(
            ("orchestrion_http_requests_total", "orchestrion_http_request_duration_seconds_count")
        ):
            series, _, value = line.rpartition(" ")
            counts[series] = float(value)
    return counts


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v != before.get(k, 0.0)}
