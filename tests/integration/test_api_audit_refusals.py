"""Every mutating call of a valid key is recorded as ``api.<route name>`` whatever refused it
(its body's declared size, its media type, its JSON), a method a route does not allow is
named as such, and what the client chose is masked in the trail. In process, SQLite."""

from __future__ import annotations

from pathlib import Path

from test_api_audit import OPERATOR, audit_page, auth, serving

from audit_helpers import audited


async def _last(client: object, action: str = "api.") -> dict[str, object]:
    records = (await audit_page(client, action=action))["records"]  # type: ignore[arg-type]
    assert records, action
    last: dict[str, object] = records[-1]
    return last


async def test_refused_calls_are_recorded_under_their_route(tmp_path: Path) -> None:
    async with serving(tmp_path, audited(), max_body_bytes=4096) as (client, _):
        big = await client.post(
            "/v1/workflow",
            content=b"{}",
            headers=auth(
                OPERATOR, **{"Content-Length": "999999", "Content-Type": "application/json"}
            ),
        )
        assert big.status_code == 413
        records = (await audit_page(client, action="api."))["records"]
        assert [(r["action"], r["outcome"]) for r in records] == [("api.submit_workflow", "413")]
        assert records[0]["details"]["route"] == "/v1/workflow"

        broken = await client.post(
            "/v1/workflow",
            content=b'{"name": ',
            headers=auth(OPERATOR, **{"Content-Type": "application/json"}),
        )
        assert broken.status_code == 422, broken.text
        last = await _last(client)
        assert (last["action"], last["outcome"]) == ("api.submit_workflow", "422")

        typed = await client.post(
            "/v1/workflow/trigger/0123456789abcdef0123456789abcdef",
            content=b"x=1",
            headers=auth(OPERATOR, **{"Content-Type": "application/x-www-form-urlencoded"}),
        )
        assert typed.status_code == 415, typed.text
        last = await _last(client)
        assert (last["action"], last["outcome"]) == ("api.trigger_workflow", "415")
        assert last["details"]["target"] == {  # type: ignore[index]
            "execution_id": "0123456789abcdef0123456789abcdef"
        }

        patch = await client.patch("/v1/workflows/x", headers=auth(OPERATOR))
        assert patch.status_code == 405
        last = await _last(client)
        assert (last["action"], last["outcome"]) == ("api.unmatched", "405")
        details = last["details"]
        assert details["method"] == "PATCH"  # type: ignore[index]
        assert "GET" in details["allowed"]  # type: ignore[index]


async def test_client_text_in_the_trail_is_masked(tmp_path: Path) -> None:
    async with serving(tmp_path, audited()) as (client, _):
        for request_id in ("ada@example.com", "+442079460958", "123-45-6789"):
            headers = auth(
                OPERATOR,
                **{"X-Request-ID": request_id, "X-Client-ID": "ops ada@example.com"},
            )
            response = await client.post(
                "/v1/workflow",
                json={"name": "refused-flow", "dag": {"nodes": []}},
                headers=headers,
            )
            assert response.headers["x-request-id"] != request_id  # a fresh id instead
            last = await _last(client)
            details = last["details"]
            assert details["request_id"] == response.headers["x-request-id"]  # type: ignore[index]
            assert details["client_id"] == "ops [email]"  # type: ignore[index]
        plain = "job-42.retry/7"
        response = await client.post(
            "/v1/workflow", json={"name": "x"}, headers=auth(OPERATOR, **{"X-Request-ID": plain})
        )
        assert response.headers["x-request-id"] == plain
        trail = str((await audit_page(client, action="api."))["records"])
        assert "ada@example.com" not in trail and "123-45-6789" not in trail
