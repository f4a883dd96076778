"""What a web page in the user's browser can make the API do: nothing it is not meant to.

With no API keys (the default) the API is open to whatever reaches it, and a page of any site
can make the browser send requests without asking first (CORS "simple requests": text/plain,
forms, no content type), or rebind its own name to the server's address. Every answer must
also tell browsers and caches not to keep it or sniff it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.integration.test_api import QUICK, assert_problem, serving

from orchestrion.api.browser_guard import HostAllowList

DEFINITION = b'{"name": "csrf-open", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}'


async def test_simple_request_bodies_are_refused_on_every_surface(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        execution_id = await api.submit(QUICK)
        paths = (
            "/v1/workflow",
            "/api/v1/workflow",
            "/workflow",
            f"/v1/workflow/trigger/{execution_id}",
            "/workflows/start",
            "/v1/definitions/quick/executions",
        )
        simple = (
            {"Content-Type": "text/plain"},
            {"Content-Type": "text/plain; charset=UTF-8"},
            {"Content-Type": "application/x-www-form-urlencoded"},
            {"Content-Type": "multipart/form-data; boundary=x"},
            {},  # a Blob or ArrayBuffer body: no content type at all
        )
        for path in paths:
            for headers in simple:
                response = await api.client.post(path, content=DEFINITION, headers=headers)
                problem = assert_problem(response, 415)
                assert "application/json" in problem["detail"], (path, headers)
        listed = (await api.client.get("/v1/workflows")).json()["items"]
        assert [item["execution_id"] for item in listed] == [execution_id]  # nothing started
        assert (await api.client.get("/v1/definitions/csrf-open")).status_code == 404

        # JSON (and YAML for definitions) as before; a call without a body needs no type.
        submitted = await api.client.post(
            "/v1/workflow", content=DEFINITION, headers={"Content-Type": "application/json"}
        )
        assert submitted.status_code == 201, submitted.text
        started = await api.client.post(f"/v1/workflow/trigger/{submitted.json()['execution_id']}")
        assert started.status_code == 202, started.text


async def test_calls_from_another_site_are_refused(tmp_path: Path) -> None:
    async with serving(tmp_path, allowed_hosts=("api", "orchestrion.example.com")) as api:
        client = api.client
        refused = (
            {"Sec-Fetch-Site": "cross-site"},
            {"Sec-Fetch-Site": "same-site"},  # another port or subdomain of the same site
            {"Origin": "https://evil.example"},
            {"Origin": "http://api.evil.example"},
            {"Origin": "null"},  # a sandboxed frame, a data: URL
            {"Origin": "http://localhost:3000"},  # another local dev server
        )
        for headers in refused:
            response = await client.post("/v1/workflow", json=QUICK, headers=headers)
            problem = assert_problem(response, 403)
            assert "ORCHESTRION_ALLOWED_HOSTS" in problem["detail"], headers
        assert (await client.get("/v1/definitions")).json()["items"] == []
        # Reads are not refused (a cross-site page cannot read the answer without CORS).
        assert (await client.get("/v1/workflows", headers=refused[0])).status_code == 200
        allowed = (
            {"Sec-Fetch-Site": "same-origin"},  # the dashboard
            {"Sec-Fetch-Site": "same-origin", "Origin": "https://proxy.example"},
            {"Origin": "http://api"},  # the request's own host
            {"Origin": "https://orchestrion.example.com"},  # the public name behind a proxy
            {},  # not a browser
        )
        for headers in allowed:
            response = await client.post("/v1/workflow", json=QUICK, headers=headers)
            assert response.status_code == 201, (headers, response.text)


async def test_webhooks_keep_their_own_content_types(tmp_path: Path) -> None:
    # Other servers send them (GitHub's form-encoded deliveries): the guard lets them through
    # to their route, which checks the signature (here: none configured, so 404/401).
    async with serving(tmp_path) as api:
        response = await api.client.post(
            "/v1/hooks/nothing/here",
            content=b"payload=%7B%7D",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Sec-Fetch-Site": "cross-site",
            },
        )
        assert response.status_code not in (403, 415), response.text


async def test_every_answer_says_no_store_and_nosniff(tmp_path: Path) -> None:
    async with serving(tmp_path, api_keys="op-key:operator") as api:
        client = api.client
        key = {"Authorization": "Bearer op-key"}
        session = await client.post("/v1/session", headers=key)
        answers = [
            session,  # carries the CSRF token
            await client.get("/v1/session", headers=key),
            await client.get("/v1/workflows", headers=key),
            await client.get("/v1/workflows"),  # 401
            await client.get("/v1/nowhere", headers=key),  # 404
            await client.post("/v1/workflow", json={}, headers=key),  # 422
            await client.get("/openapi.json"),
            await client.get("/health"),
        ]
        for response in answers:
            assert response.headers["cache-control"] == "no-store", response.request.url
            assert response.headers["x-content-type-options"] == "nosniff"
        assert "csrf_token" in session.json()


async def test_an_app_given_host_names_answers_only_those(tmp_path: Path) -> None:
    async with serving(tmp_path, allowed_hosts=("orchestrion.example.com", "*.internal")) as api:
        for host in ("orchestrion.example.com", "a.b.internal:8000", "localhost:8000", "[::1]"):
            response = await api.client.get("/v1/workflows", headers={"Host": host})
            assert response.status_code == 200, (host, response.text)
        for host in ("attacker.example", "internal", "orchestrion.example.com.evil.example"):
            response = await api.client.get("/v1/workflows", headers={"Host": host})
            problem = assert_problem(response, 421)
            assert "ORCHESTRION_ALLOWED_HOSTS" in problem["detail"], host


@pytest.mark.parametrize(
    ("configured", "bound", "host", "allowed"),
    [
        ((), "127.0.0.1", "127.0.0.1:8000", True),
        ((), "127.0.0.1", "localhost", True),
        ((), "127.0.0.1", "app.localhost:8000", True),
        ((), "127.0.0.1", "[::1]:8000", True),
        ((), "127.0.0.1", "LOCALHOST.", True),
        ((), "127.0.0.1", "rebind.attacker.example:8000", False),
        ((), "127.0.0.1", "10.0.0.5", False),
        ((), "10.0.0.5", "10.0.0.5:8000", True),
        ((), "0.0.0.0", "10.0.0.5:8000", True),  # every address: IP literals cannot rebind
        ((), "::", "[fd00::5]:8000", True),
        ((), "0.0.0.0", "orchestrion.internal", False),  # names must be listed
        (("orchestrion.internal",), "0.0.0.0", "orchestrion.internal:443", True),
        (("*",), "127.0.0.1", "anything.example", True),
    ],
)
def test_host_allow_list(configured: tuple[str, ...], bound: str, host: str, allowed: bool) -> None:
    assert HostAllowList.of(configured, bound).allows(host) is allowed


def test_allowed_hosts_setting_refuses_urls() -> None:
    from orchestrion.settings import load_settings

    with pytest.raises(Exception, match="not a host name"):
        load_settings(allowed_hosts="https://orchestrion.example.com/")
    settings = load_settings(allowed_hosts="Orchestrion.Example.com, *.internal")
    assert settings.allowed_hosts == ("orchestrion.example.com", "*.internal")


async def test_docs_are_served_from_the_package_under_a_strict_csp(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        page = await api.client.get("/docs")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self';" in csp and "unsafe" not in csp
        assert "https://" not in page.text and "cdn" not in page.text.lower()
        assert page.headers["x-frame-options"] == "DENY"
        for path in ("/docs/static/swagger-ui-bundle.js", "/docs/static/swagger-ui.css"):
            asset = await api.client.get(path)
            assert asset.status_code == 200 and len(asset.content) > 100_000
            assert asset.headers["x-content-type-options"] == "nosniff"
        assert (await api.client.get("/docs/static/README.md")).status_code == 404
        assert (await api.client.get("/docs/static/..%2fapidocs.py")).status_code == 404
        assert (await api.client.get("/redoc")).status_code == 404


def test_vendored_docs_files_match_their_recorded_checksums() -> None:
    import hashlib
    import re

    from orchestrion.api.apidocs import STATIC

    readme = (STATIC / "README.md").read_text()
    recorded = dict(re.findall(r"\| `([\w.-]+)` \| sha256 `([0-9a-f]{64})`", readme))
    assert set(recorded) == {"swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"}
    for name, digest in recorded.items():
        assert hashlib.sha256((STATIC / name).read_bytes()).hexdigest() == digest, name
    assert "Apache License" in (STATIC / "LICENSE").read_text()


async def test_every_event_stream_route_takes_a_stream_slot(tmp_path: Path) -> None:
    # Any route answering text/event-stream, now or added later, must count its streams.
    async with serving(tmp_path, sse_max_streams_per_caller=1) as api:
        execution_id = await api.submit(QUICK)
        paths = [
            path.replace("{execution_id}", execution_id).replace("{node_id}", "greet")
            for path, operations in api.app.openapi()["paths"].items()
            for operation in operations.values()
            if "text/event-stream" in operation["responses"].get("200", {}).get("content", {})
        ]
        assert len(paths) >= 4, paths
        api.app.state.ctx.streams.take("address:127.0.0.1")  # this client's one stream
        for path in paths:
            problem = assert_problem(await api.client.get(path), 429)
            assert "ORCHESTRION_SSE_MAX_STREAMS_PER_CALLER" in problem["detail"], path
