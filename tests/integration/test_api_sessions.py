"""Browser sessions: an API key exchanged for an HttpOnly cookie, CSRF on every change.

The cookie must authenticate exactly as its key does (same role, same audit actor), and must
never be enough on its own to change anything: a state-changing call made by the cookie needs
the session's X-CSRF-Token, on every mutating verb and every API surface.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest
from tests.integration.test_api import QUICK, assert_problem, serving

from orchestrion.api.sessions import COOKIE, SessionKey, issue, parse

KEYS = "adm-key:admin,op-key:operator:olive,view-key:viewer"


async def _sign_in(client: httpx.AsyncClient, key: str) -> tuple[str, str]:
    response = await client.post("/v1/session", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 201, response.text
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert key not in cookie  # the key never travels back in the cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    body = response.json()
    assert body["via"] == "session" and body["csrf_token"]
    return value, body["csrf_token"]


async def test_session_cookie_acts_as_its_key_and_needs_csrf_to_change(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS) as api:
        client = api.client
        value, token = await _sign_in(client, "op-key")
        client.cookies.set(COOKIE, value)
        who = (await client.get("/v1/session")).json()
        assert who["role"] == "operator" and who["name"] == "olive"
        assert who["csrf_token"] == token and who["via"] == "session"
        assert (await client.get("/v1/workflows")).status_code == 200

        # No token, a wrong one, or another session's: refused before anything runs.
        for headers in ({}, {"X-CSRF-Token": "0" * 64}, {"X-CSRF-Token": token[:-1]}):
            problem = assert_problem(
                await client.post("/v1/workflow", json=QUICK, headers=headers), 403
            )
            assert "X-CSRF-Token" in problem["detail"]
        assert (await client.get("/v1/workflows")).json()["items"] == []
        for method, path in (
            ("DELETE", "/v1/workflows/x"),
            ("POST", "/v1/workflows/x/retry"),
            ("POST", "/v1/workflows/x/nodes/a/approve"),
            ("PUT", "/v1/workflows/x"),
            ("PATCH", "/v1/workflows/x"),
            ("POST", "/workflows/start"),  # a compatibility surface: the same rule
            ("POST", "/api/v1/workflow"),
            ("DELETE", "/v1/session"),
        ):
            response = await client.request(method, path)
            assert response.status_code == 403, (method, path, response.text)

        started = await client.post("/v1/workflow", json=QUICK, headers={"X-CSRF-Token": token})
        assert started.status_code == 201, started.text
        execution_id = started.json()["execution_id"]
        listed = (await client.get("/v1/workflows")).json()["items"]
        assert [item["execution_id"] for item in listed] == [execution_id]

        # A bearer token wins over the cookie: the viewer key reads but cannot change.
        viewer = {"Authorization": "Bearer view-key", "X-CSRF-Token": token}
        assert_problem(await client.post("/v1/workflow", json=QUICK, headers=viewer), 403)

        # Signing out ends the session here, even if the cookie is kept and replayed.
        out = await client.delete("/v1/session", headers={"X-CSRF-Token": token})
        assert out.status_code == 200 and "Max-Age=0" in out.headers["set-cookie"]
        client.cookies.set(COOKIE, value)
        assert_problem(await client.get("/v1/workflows"), 401)
        client.cookies.clear()


async def test_viewer_session_cannot_act_even_with_its_token(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS) as api:
        value, token = await _sign_in(api.client, "view-key")
        api.client.cookies.set(COOKIE, value)
        headers = {"X-CSRF-Token": token}
        assert_problem(await api.client.post("/v1/workflow", json=QUICK, headers=headers), 403)
        assert (await api.client.get("/v1/session")).json()["role"] == "viewer"


@pytest.mark.parametrize(
    "forged",
    [
        "garbage",
        "v1.." + "0" * 200,
        "v2.0123456789abcdef.9999999999." + "a" * 32 + "." + "b" * 64,
        "x" * 5000,
    ],
)
async def test_forged_or_foreign_cookies_authenticate_nobody(tmp_path: Path, forged: str) -> None:
    async with serving(tmp_path, api_keys=KEYS) as api:
        api.client.cookies.set(COOKIE, forged)
        problem = assert_problem(await api.client.get("/v1/workflows"), 401)
        assert "sign in again" in problem["detail"]


async def test_tickets_are_bound_to_their_key_and_expire(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS) as api:
        client = api.client
        # Signed by a key that is not configured (or no longer): nobody.
        value, _ = issue(SessionKey.of("removed-key"), 3600)
        client.cookies.set(COOKIE, value)
        assert_problem(await client.get("/v1/workflows"), 401)
        # The viewer's ticket with the admin's key id: the MAC no longer matches.
        value, ticket = issue(SessionKey.of("view-key"), 3600)
        admin_kid = SessionKey.of("adm-key").kid
        client.cookies.set(COOKIE, value.replace(ticket.kid, admin_kid))
        assert_problem(await client.get("/v1/workflows"), 401)
        # Expired.
        value, _ = issue(SessionKey.of("adm-key"), 60, now=time.time() - 120)
        client.cookies.set(COOKIE, value)
        assert_problem(await client.get("/v1/workflows"), 401)
        client.cookies.clear()
        # Signing in needs the key itself: not a cookie, not nothing.
        assert_problem(await client.post("/v1/session"), 401)
        value, token = await _sign_in(client, "adm-key")
        client.cookies.set(COOKIE, value)
        assert_problem(await client.post("/v1/session", headers={"X-CSRF-Token": token}), 400)
        assert parse(value) is not None


async def test_open_api_session_says_so(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        body = (await api.client.get("/v1/session")).json()
        assert body == {
            "open": True,
            "role": "admin",
            "key_id": None,
            "name": None,
            "via": "none",
            "expires_at": None,
            "csrf_token": None,
            "required_headers": [],
        }


async def test_session_cookie_is_secure_when_configured(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS, session_cookie_secure=True) as api:
        response = await api.client.post("/v1/session", headers={"Authorization": "Bearer op-key"})
        assert "Secure" in response.headers["set-cookie"]


async def test_session_names_the_required_headers(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys=KEYS, required_headers="X-Source") as api:
        value, token = await _sign_in(api.client, "op-key")
        api.client.cookies.set(COOKIE, value)
        assert (await api.client.get("/v1/session")).json()["required_headers"] == ["X-Source"]
        headers = {"X-CSRF-Token": token}
        assert_problem(await api.client.post("/v1/workflow", json=QUICK, headers=headers), 400)
        headers["X-Source"] = "orchestrion-dashboard"
        answer = await api.client.post("/v1/workflow", json=QUICK, headers=headers)
        assert answer.status_code == 201, answer.text


async def test_a_sign_out_holds_in_every_process_and_after_a_restart(tmp_path: Path) -> None:
    async with (
        serving(tmp_path, api_keys=KEYS) as first,
        serving(tmp_path, api_keys=KEYS) as second,
    ):
        value, token = await _sign_in(first.client, "op-key")
        for api in (first, second):  # one key, one cookie: valid in every process
            api.client.cookies.set(COOKIE, value)
            assert (await api.client.get("/v1/workflows")).status_code == 200
        out = await first.client.delete("/v1/session", headers={"X-CSRF-Token": token})
        assert out.status_code == 200
        first.client.cookies.set(COOKIE, value)
        assert_problem(await first.client.get("/v1/workflows"), 401)  # here: at once
        deadline = time.monotonic() + 15
        while (await second.client.get("/v1/workflows")).status_code == 200:
            assert time.monotonic() < deadline, "the other process still takes the cookie"
            await asyncio.sleep(0.1)
        problem = assert_problem(await second.client.get("/v1/workflows"), 401)
        assert "sign in again" in problem["detail"]
        # A state-changing call with the right token is refused there too.
        started = await second.client.post(
            "/v1/workflow", json=QUICK, headers={"X-CSRF-Token": token}
        )
        assert started.status_code in (401, 403), started.text
    async with serving(tmp_path, api_keys=KEYS) as restarted:
        restarted.client.cookies.set(COOKIE, value)
        assert_problem(await restarted.client.get("/v1/workflows"), 401)
        restarted.client.cookies.clear()
        fresh, _ = await _sign_in(restarted.client, "op-key")  # a new session of the key works
        restarted.client.cookies.set(COOKIE, fresh)
        assert (await restarted.client.get("/v1/workflows")).status_code == 200
