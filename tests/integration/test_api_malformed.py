"""Malformed input through the in-process API: always a 4xx problem naming the place, never
a 500, and nothing stored (the tables are in tests/malformed.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from malformed import (
    BAD_DURATIONS,
    BAD_INSTANTS,
    BODY_CASES,
    TEMPLATE_CASES,
    BodyCase,
    definition,
    json_text,
)
from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

PROBLEM = "application/problem+json"
ADMIN = {"Authorization": "Bearer admin-key"}
_JSON = {"Content-Type": "application/json"}


@dataclass
class Served:
    client: httpx.AsyncClient
    engine: Engine
    execution_id: str  # pending: a trigger may still start it
    name: str


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        api_keys="admin-key:admin",
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://api", headers=ADMIN
            ) as client:
                submitted = await client.post("/v1/workflow", json=definition())
                assert submitted.status_code == 201, submitted.text
                body = submitted.json()
                yield Served(client, engine, body["execution_id"], body["name"])
    finally:
        await engine.stop(0)


def assert_problem(response: httpx.Response, status: int, says: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["status"] == status and problem["request_id"]
    assert "Traceback" not in response.text
    assert says.lower() in response.text.lower(), response.text[:500]
    return dict(problem)


def route_of(case: BodyCase, served: Served) -> str:
    return {
        "submit": "/v1/workflow",
        "trigger": f"/v1/workflow/trigger/{served.execution_id}",
        "start": f"/v1/definitions/{served.name}/executions",
        "approve": f"/v1/workflows/{served.execution_id}/nodes/b/approve",
        "event": "/v1/events/malformed.test",
    }[case.route]


@pytest.mark.parametrize("case", BODY_CASES, ids=lambda case: case.label)
async def test_malformed_bodies_are_refused_and_nothing_changes(
    served: Served, case: BodyCase
) -> None:
    before = await served.engine.store.list_definitions(None, 100, 0)
    response = await served.client.post(
        route_of(case, served), content=case.body, headers={"Content-Type": case.content_type}
    )
    problem = assert_problem(response, case.status, case.says)
    if problem["type"].endswith("invalid-json"):
        assert problem["errors"][0]["field"], problem  # a JSON pointer, or line and column
    assert await served.engine.store.list_definitions(None, 100, 0) == before
    record = await served.engine.store.get_execution(served.execution_id)
    assert record.status.value == "pending" and record.inputs == {}


async def test_a_json_pointer_names_the_place(served: Served) -> None:
    body = b'{"input_params": {"deep": {"list": [1, "\\udc00"]}}}'
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}", content=body, headers=_JSON
    )
    problem = assert_problem(response, 422, "surrogate")
    assert problem["errors"][0]["field"] == "/input_params/deep/list/1"
    deep = b'{"a":\n' + b"[" * 200 + b"]" * 200 + b"}"
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}", content=deep, headers=_JSON
    )
    assert assert_problem(response, 422, "nested")["errors"][0]["field"].startswith("/a/0/0")
    # A definition's depth is the governance policy's limit, which names itself.
    response = await served.client.post("/v1/workflow", content=deep, headers=_JSON)
    assert_problem(response, 422, "definitions.max_nesting_depth")


async def test_bodies_within_the_bounds_are_accepted(served: Served) -> None:
    nested: Any = "leaf"
    for _ in range(59):  # with the five levels around it: 64, the most allowed
        nested = [nested]
    spec = definition(config={"value": nested, "big": 10**99, "emoji": "\U0001f600"})
    response = await served.client.post("/v1/workflow", json=spec)
    assert response.status_code == 201, response.text
    # A surrogate pair is one valid character, not a lone surrogate.
    pair = b'{"input_params": {"who": "\\ud83d\\ude00"}}'
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}", content=pair, headers=_JSON
    )
    assert response.status_code == 202, response.text


@pytest.mark.parametrize(("template", "says"), TEMPLATE_CASES, ids=lambda v: str(v)[:40])
async def test_template_compile_errors_name_node_and_field(
    served: Served, template: str, says: str
) -> None:
    spec = definition(config={"value": {"nested": [template]}})
    problem = assert_problem(await served.client.post("/v1/workflow", json=spec), 422, says)
    issue = problem["errors"][0]
    assert issue["node"] == "b" and issue["field"] == "config.value.nested[0]", issue
    # The same in a `when:` condition, and in an override at trigger time.
    spec = definition(when=template)
    problem = assert_problem(await served.client.post("/v1/workflow", json=spec), 422, says)
    assert problem["errors"][0]["field"] == "when"
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}",
        json={"node_overrides": {"b": {"value": template}}},
    )
    problem = assert_problem(response, 422, says)
    assert problem["errors"][0]["node"] == "b"


@pytest.mark.parametrize("older_than", BAD_DURATIONS)
async def test_purge_refuses_every_bad_duration(served: Served, older_than: str) -> None:
    response = await served.client.post("/v1/admin/purge", params={"older_than": older_than})
    assert_problem(response, 422, "older_than")


@pytest.mark.parametrize("older_than", ["P99999999999D", "999999999999d", "0", "1.5", "PT1S"])
async def test_purge_never_answers_a_date_before_1970(served: Served, older_than: str) -> None:
    response = await served.client.post("/v1/admin/purge", params={"older_than": older_than})
    assert response.status_code == 200, response.text
    assert response.json()["finished_before"] >= 0


async def test_purge_without_a_duration_or_policy_is_a_conflict(served: Served) -> None:
    assert_problem(await served.client.post("/v1/admin/purge"), 409, "retention.days")


@pytest.mark.parametrize("value", BAD_INSTANTS)
@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/v1/workflows", "created_after"),
        ("/v1/workflows", "created_before"),
        ("/v1/audit", "since"),
        ("/v1/audit", "until"),
    ],
)
async def test_time_filters_refuse_every_bad_instant(
    served: Served, path: str, name: str, value: str
) -> None:
    assert_problem(await served.client.get(path, params={name: value}), 422, name)


@pytest.mark.parametrize(
    "value", ["0", "0.5", "1712345678.25", "2026-12-01T09:30:00Z", "2026-12-01T09:30:00",
              "0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59", "2016-12-31T23:59:60Z"],
)  # fmt: skip
async def test_time_filters_accept_what_the_document_declares(served: Served, value: str) -> None:
    for path, name in (("/v1/workflows", "created_before"), ("/v1/audit", "until")):
        response = await served.client.get(path, params={name: value})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    ("path", "params"),
    [
        ("/v1/events", {"type": "true"}),
        ("/v1/events", {"type": ""}),
        ("/v1/workflows", {"cursor": ""}),
        ("/v1/workflows", {"cursor": "not base64!"}),
        ("/v1/workflows", {"limit": "0"}),
        ("/v1/workflows", {"limit": "1e3"}),
        ("/v1/events", {"after": "-1"}),
        ("/v1/events", {"after": "9" * 30}),
        ("/v1/events", {"limit": "nan"}),
        ("/v1/audit", {"after_seq": "9" * 5000}),
        ("/v1/definitions", {"offset": "-1"}),
    ],
)
async def test_integer_and_pattern_parameters_are_enforced(
    served: Served, path: str, params: dict[str, str]
) -> None:
    assert_problem(await served.client.get(path, params=params), 422)


@pytest.mark.parametrize(
    "url",
    [
        "/v1/workflows/%ED%A0%80",  # a surrogate, UTF-8 encoded
        "/v1/workflows/%FF",
        "/v1/workflows/a%00b",
        "/v1/definitions/%C0%AF",  # an overlong encoding of '/'
        "/v1/workflows?workflow=%ED%A0%80",
        "/v1/workflows?workflow=%00",
        "/v1/definitions?name=a%0Ab",
        "/v1/events?type=%FF",
        "/v1/audit?actor=%FE",
    ],
)
async def test_paths_and_queries_must_be_utf8_text(served: Served, url: str) -> None:
    assert_problem(await served.client.get(url), 400, "UTF-8")


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Idempotency-Key", b"\xff"),
        ("X-Client-ID", b"caf\xc3\xa9"),
        ("X-Request-ID", b"\xed\xa0\x80"),
        ("X-Client-ID", b"ci\x01bot"),
    ],
)
async def test_header_values_of_any_bytes_never_break_a_request(
    served: Served, header: str, value: bytes
) -> None:
    # Headers are Latin-1, which any byte is: they are read, logged and audited as such.
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}",
        headers={header: value},  # type: ignore[dict-item]
    )
    assert response.status_code in (202, 409), response.text
    assert "Traceback" not in response.text


@pytest.mark.parametrize("value", [b"Bearer admin-key\xff", b"Bearer \xed\xa0\x80"])
async def test_an_api_key_that_is_not_ascii_is_unknown(served: Served, value: bytes) -> None:
    # The gate answers first: an unauthenticated request never reaches body parsing.
    response = await served.client.post(
        "/v1/workflow",
        headers={"Authorization": value, **_JSON},  # type: ignore[dict-item]
        content=b'{"a": NaN}',
    )
    assert_problem(response, 401, "API key")


async def test_unknown_override_node_is_invalid_content(served: Served) -> None:
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}", json={"node_overrides": {"zz": {}}}
    )
    assert assert_problem(response, 422, "unknown node")["errors"][0]["node"] == "zz"


async def test_the_document_declares_what_the_server_enforces(served: Served) -> None:
    document = (await served.client.get("/openapi.json")).json()
    params = {
        (path, p["name"]): p["schema"]
        for path, operations in document["paths"].items()
        for operation in operations.values()
        for p in operation.get("parameters", [])
    }
    assert "pattern" in params[("/v1/admin/purge", "older_than")]["anyOf"][0]
    assert "pattern" in json.dumps(params[("/v1/events", "type")])
    instant = params[("/v1/audit", "since")]
    assert {"type": "number", "minimum": 0, "maximum": 253402300799} in instant["anyOf"]
    assert "pattern" in json.dumps(params[("/v1/workflows/{execution_id}", "execution_id")])
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if path.startswith("/v1/"):
                assert {"400", "422", "500"} <= set(operation["responses"]), (method, path)


async def test_the_backstop_answers_500_without_details_and_logs_them(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'net.db'}", rate_limit_per_second=0
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)

    async def broken() -> None:
        raise RuntimeError("internal detail \ud800 that must not leak")

    app.add_api_route("/v1/broken", broken, methods=["GET"])
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            response = await client.get("/v1/broken")
    finally:
        await engine.stop(0)
    problem = assert_problem(response, 500)
    assert "internal detail" not in response.text and "RuntimeError" not in response.text
    logged = [r for r in caplog.records if r.exc_info and "unhandled error" in r.getMessage()]
    assert logged and getattr(logged[0], "request_id", None) == problem["request_id"]


@pytest.mark.parametrize("bad", ['"\\ud800"', "NaN", "9" * 5000, "[" * 3000 + "]" * 3000])
async def test_large_bodies_are_checked_off_the_event_loop_too(served: Served, bad: str) -> None:
    padding = ["x" * 1000] * 200  # about 200 KiB: parsed in a thread
    body = json_text({"input_params": {"pad": padding, "bad": "@x@"}}, x=bad).encode()
    response = await served.client.post(
        f"/v1/workflow/trigger/{served.execution_id}", content=body, headers=_JSON
    )
    assert_problem(response, 422)


async def test_a_body_passed_once_gets_the_same_verdict_on_every_route(served: Served) -> None:
    # Bodies found acceptable are remembered by their bytes, per kind of route: a key given
    # twice is the definition loader's to report on a submit, and refused on a trigger,
    # however often and in whatever order the same bytes come.
    twice = b'{"input_params": {"a": 1, "a": 2}}'
    trigger = f"/v1/workflow/trigger/{served.execution_id}"
    for _ in range(2):
        response = await served.client.post("/v1/workflow", content=twice, headers=_JSON)
        assert response.status_code >= 400 and "invalid-json" not in response.text
        assert_problem(
            await served.client.post(trigger, content=twice, headers=_JSON), 422, "twice"
        )
    surrogate = b'{"input_params": {"who": "\\udc00"}}'
    for _ in range(3):
        response = await served.client.post(trigger, content=surrogate, headers=_JSON)
        assert_problem(response, 422, "surrogate")
    again = json.dumps(definition()).encode()
    for _ in range(3):
        response = await served.client.post("/v1/workflow", content=again, headers=_JSON)
        assert response.status_code == 201, response.text
