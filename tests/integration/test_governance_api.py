"""The policy over HTTP: /health/governance, /health/compliance, the policy's required headers,
and roles on every route (issue #6). In process: httpx over ASGI, a real engine on SQLite."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from orchestrion.api import create_app
from orchestrion.api.app import api_context
from orchestrion.engine.facade import Engine
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.policy import load_policy
from orchestrion.settings import load_settings

KEYS = "adm-key:admin,op-key:operator,view-key:viewer"
ADMIN = {"Authorization": "Bearer adm-key"}
VIEWER = {"Authorization": "Bearer view-key"}
PROBLEM = "application/problem+json"

POLICY = """\
version: 1
masking:
  kinds: [email, card]
  patterns:
    employee_id: '\\bEMP-\\d{6}\\b'
http:
  deny_private: true
retention:
  days: 30
required_headers: [X-Request-Source]
"""


@contextlib.asynccontextmanager
async def serving(
    tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[httpx.AsyncClient, FastAPI]]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'gov.db'}",
        rate_limit_per_second=0,
        rate_limit_unauthenticated_per_second=0,  # every route is tried without a key
        **overrides,
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, app
    finally:
        await engine.stop(0)


@pytest.fixture
def policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "governance.yaml"
    path.write_text(POLICY)
    return path


async def test_health_governance_shows_the_policy_in_force(
    tmp_path: Path, policy_file: Path
) -> None:
    async with serving(tmp_path, api_keys=KEYS, governance_file=policy_file) as (client, _):
        assert (await client.get("/health/governance")).status_code == 401
        response = await client.get("/health/governance", headers=VIEWER)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["source"] == str(policy_file)
    assert body["sha256"] == load_policy(policy_file).sha256
    assert body["policy"]["masking"]["kinds"] == ["email", "card"]
    assert body["policy"]["masking"]["patterns"] == {"employee_id": r"\bEMP-\d{6}\b"}
    assert body["policy"]["retention"] == {"days": 30}
    assert body["policy"]["required_headers"] == ["X-Request-Source"]


async def test_health_governance_shows_urls_and_headers_without_their_values(
    tmp_path: Path,
) -> None:
    path = tmp_path / "governance.yaml"
    path.write_text(
        "audit:\n  anchor:\n    webhook: https://audit.example.com/cp?tenant=acme\n"
        "llm:\n  providers:\n    azure:\n"
        "      base_url: https://llm.example.com/v1?api-version=2024-06-01\n"
        "      headers: {api-version: '2024-06-01'}\n"
    )
    async with serving(tmp_path, api_keys=KEYS, governance_file=path) as (client, _):
        body = (await client.get("/health/governance", headers=VIEWER)).json()
    assert body["sha256"] == load_policy(path).sha256  # the hash of the policy as loaded
    assert body["policy"]["audit"]["anchor"]["webhook"] == "https://audit.example.com/cp?tenant=***"
    azure = body["policy"]["llm"]["providers"]["azure"]
    assert azure["base_url"] == "https://llm.example.com/v1?api-version=***"
    assert azure["headers"] == {"api-version": "***"}


async def test_the_shipped_default_policy_is_reported_without_a_file(tmp_path: Path) -> None:
    async with serving(tmp_path) as (client, _):
        body = (await client.get("/health/governance")).json()
    assert body["source"].endswith("default_governance.yaml")
    assert body["sha256"] == load_policy().sha256


def _controls(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {control["control"]: control for control in body["controls"]}


async def test_compliance_without_keys_says_what_is_degraded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ORCHESTRION_ENCRYPTION_KEYS", raising=False)
    monkeypatch.delenv("ORCHESTRION_AUDIT_KEYS", raising=False)
    async with serving(tmp_path) as (client, _):
        response = await client.get("/health/compliance")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "degraded" and body["sha256"] == load_policy().sha256
    controls = _controls(body)
    assert set(controls) == {
        "policy", "masking", "encryption", "audit", "ssrf_guard", "python_allowlist",
        "template_limits", "llm_policy", "retention", "api_keys", "required_headers",
        "payload_limit",
    }  # fmt: skip
    assert {c["state"] for c in controls.values()} <= {"on", "off", "degraded"}
    assert controls["encryption"]["state"] == "degraded"
    assert "ORCHESTRION_ENCRYPTION_KEYS is not set" in controls["encryption"]["detail"]
    assert controls["audit"]["state"] == "degraded"
    assert controls["masking"]["state"] == "on"
    assert controls["masking"]["info"]["kinds"] == ["email", "iban", "card", "ssn", "phone"]
    assert controls["ssrf_guard"]["state"] == "on"
    assert "169.254.0.0/16" in controls["ssrf_guard"]["info"]["deny_networks"]
    assert controls["ssrf_guard"]["info"]["deny_reserved"] is True
    assert "multicast, broadcast and reserved addresses" in controls["ssrf_guard"]["detail"]
    assert controls["retention"]["state"] == "off"
    assert controls["api_keys"]["state"] == "off"
    assert controls["required_headers"]["state"] == "off"
    assert controls["payload_limit"]["info"]["max_body_bytes"] > 0


async def test_compliance_with_keys_and_a_checked_audit_chain(
    tmp_path: Path, policy_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = KeyRing.generate_key()
    monkeypatch.setenv(
        "ORCHESTRION_ENCRYPTION_KEYS", f"enc-2:{secret},enc-1:{KeyRing.generate_key()}"
    )
    monkeypatch.setenv("ORCHESTRION_AUDIT_KEYS", f"aud-1:{KeyRing.generate_key()}")
    async with serving(
        tmp_path, api_keys=KEYS, governance_file=policy_file, required_headers="X-Client-ID"
    ) as (client, app):
        assert (await client.get("/health/compliance", headers=VIEWER)).status_code == 403
        unchecked = _controls((await client.get("/health/compliance", headers=ADMIN)).json())

        async def verified() -> dict[str, Any]:
            return {"verified": True, "records": 7}

        api_context(app).audit_status = verified
        good = (await client.get("/health/compliance", headers=ADMIN)).json()

        async def tampered() -> dict[str, Any]:
            return {"verified": False, "detail": "record 3 was edited"}

        api_context(app).audit_status = tampered
        bad = (await client.get("/health/compliance", headers=ADMIN)).json()
    assert unchecked["audit"]["state"] == "on"  # the server's own trail, verified for real
    assert unchecked["audit"]["detail"].startswith("audit chain verified up to record ")
    assert unchecked["audit"]["info"]["chain"]["verified"] is True
    assert unchecked["encryption"]["state"] == "on"
    assert unchecked["encryption"]["info"]["key_ids"] == ["enc-1", "enc-2"]
    assert unchecked["encryption"]["info"]["primary"] == "enc-2"
    assert unchecked["masking"]["info"]["patterns"] == ["employee_id"]
    assert "private networks" in unchecked["ssrf_guard"]["detail"]
    assert unchecked["retention"]["detail"] == "executions older than 30 days are purged"
    assert unchecked["api_keys"]["info"]["keys_by_role"] == {
        "admin": 1,
        "operator": 1,
        "viewer": 1,
    }
    assert unchecked["required_headers"]["info"]["headers"] == ["X-Client-ID", "X-Request-Source"]
    assert good["status"] == "ok"
    assert _controls(good)["audit"]["detail"] == (
        "audit chain verified up to record 7; not anchored outside the database"
        " (audit.anchor in the policy)"
    )
    assert bad["status"] == "degraded"
    assert _controls(bad)["audit"]["state"] == "degraded"
    assert _controls(bad)["audit"]["detail"] == "record 3 was edited"
    assert secret not in repr([unchecked, good, bad])  # key ids, never keys


async def test_the_policys_required_headers_apply_to_mutating_calls(
    tmp_path: Path, policy_file: Path
) -> None:
    definition = {"name": "h", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    async with serving(tmp_path, governance_file=policy_file, required_headers="X-Client-ID") as (
        client,
        _,
    ):
        response = await client.post("/v1/workflow", json=definition)
        assert response.status_code == 400
        assert [e["field"] for e in response.json()["errors"]] == [
            "X-Client-ID",
            "X-Request-Source",
        ]
        only_one = await client.post(
            "/v1/workflow", json=definition, headers={"X-Client-ID": "tests"}
        )
        assert only_one.status_code == 400 and "X-Request-Source" in only_one.json()["detail"]
        both = {"X-Client-ID": "tests", "x-request-source": "ci"}
        assert (await client.post("/v1/workflow", json=definition, headers=both)).status_code == 201
        assert (await client.get("/v1/workflows")).status_code == 200  # reads need none


# ------------------------------------------------------------------ roles on every route


def _routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from _routes(route.original_router.routes)


def _roles(dependant: Dependant) -> set[str]:
    found: set[str] = set()
    for sub in dependant.dependencies:
        name = getattr(sub.call, "__name__", "")
        if name.startswith("require_") and name != "require_headers":
            found.add(name.removeprefix("require_"))
        found |= _roles(sub)
    return found


OPEN = {"/health", "/metrics"}  # probes and scrapers
# Inbound webhooks carry no key: the sender signs each request with the trigger's secret
# (tests/integration/test_webhook_triggers.py). Unsigned, they are refused like no key.
SIGNED = {"/v1/hooks/{workflow}/{trigger}"}
# The dashboard's sign-in: it reads the key (or the session cookie) itself, for any role.
SESSION = {"/v1/session"}
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
# POSTed because a definition is a body, but they change nothing: a viewer may ask.
READ_ONLY_POSTS = {"/v1/workflow/validate"}


def _path(route: APIRoute) -> str:
    return re.sub(r"\{[^}]+\}", "x", route.path)


async def test_every_route_needs_a_role_and_a_viewer_changes_nothing(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS) as (client, app):
        routes = [r for r in _routes(app.routes) if r.path not in OPEN | SIGNED | SESSION]
        assert len(routes) >= 20
        signed = [r for r in _routes(app.routes) if r.path in SIGNED | SESSION]
        assert {r.path for r in signed} == SIGNED | SESSION
        for route in signed:
            for method in route.methods or set():
                # A key is no signature; the session routes take any role's key.
                for headers in ({}, VIEWER) if route.path in SIGNED else ({},):
                    unsigned = await client.request(method, _path(route), headers=headers)
                    assert unsigned.status_code == 401, (method, route.path, unsigned.text)
                    assert unsigned.headers["content-type"].startswith(PROBLEM)
        for route in routes:
            roles = _roles(route.dependant)
            assert len(roles) == 1, (route.path, route.methods, roles)
            methods = route.methods or set()
            if methods & MUTATING and route.path not in READ_ONLY_POSTS:
                assert roles != {"viewer"}, (route.path, methods)
            for method in methods:
                anonymous = await client.request(method, _path(route))
                assert anonymous.status_code == 401, (method, route.path, anonymous.text)
                assert anonymous.headers["content-type"].startswith(PROBLEM)
                if method in MUTATING and route.path not in READ_ONLY_POSTS:
                    as_viewer = await client.request(method, _path(route), headers=VIEWER)
                    assert as_viewer.status_code == 403, (method, route.path, as_viewer.text)
                    assert "this needs the" in as_viewer.json()["detail"]
        mutating_routes = [r for r in routes if (r.methods or set()) & MUTATING]
        assert len(mutating_routes) >= 9
