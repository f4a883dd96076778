"""The REST API in-process: a real engine on SQLite, the app's lifespan, httpx over ASGI.

Every endpoint of docs/API.md, the problem documents of every error status, auth, required
headers, rate limits, idempotency, pagination, events and their stream, metrics, logs and the
OpenAPI document.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from prometheus_client.parser import text_string_to_metric_families

from orchestrion.api import create_app
from orchestrion.api.surfaces import is_api_path
from orchestrion.engine.facade import Engine
from orchestrion.errors import ConfigurationError
from orchestrion.observability.logging_setup import configure_logging
from orchestrion.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "examples" / "reference"
PROBLEM = "application/problem+json"


def node(node_id: str, handler: str = "noop", deps: tuple[str, ...] = (), **config: Any) -> dict:
    return {"id": node_id, "handler": handler, "dependencies": list(deps), "config": config}


def sleeper(node_id: str, seconds: float, deps: tuple[str, ...] = ()) -> dict:
    return node(node_id, "python", deps, function="sleep", params={"seconds": seconds})


QUICK = {
    "name": "quick",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            node("greet", deps=("input",), value="hello {{ input.name }}"),
            {"id": "output", "handler": "output", "dependencies": ["greet"]},
        ]
    },
}
SLOW = {"name": "slow", "dag": {"nodes": [sleeper("nap", 30)]}}
FAILING = {
    "name": "failing",
    "dag": {"nodes": [node("boom", "python", function="fail", params={"message": "no luck"})]},
}


@dataclass
class Api:
    client: httpx.AsyncClient
    app: FastAPI
    engine: Engine
    settings: Settings

    async def submit(self, definition: dict[str, Any], **headers: str) -> str:
        response = await self.client.post("/v1/workflow", json=definition, headers=headers)
        assert response.status_code == 201, response.text
        return str(response.json()["execution_id"])

    async def start(self, definition: dict[str, Any], body: Any = None, **headers: str) -> str:
        execution_id = await self.submit(definition)
        response = await self.client.post(
            f"/v1/workflow/trigger/{execution_id}", json=body, headers=headers
        )
        assert response.status_code == 202, response.text
        return execution_id

    async def until(self, execution_id: str, *states: str, timeout: float = 20) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            body = (await self.client.get(f"/v1/workflows/{execution_id}")).json()
            if body["status"] in states:
                return dict(body)
            assert time.monotonic() < deadline, f"{execution_id} stayed {body['status']}"
            await asyncio.sleep(0.02)


def _settings(tmp_path: Path, **overrides: Any) -> Settings:
    base: dict[str, Any] = {
        "database_url": f"sqlite:///{tmp_path / 'api.db'}",
        "rate_limit_per_second": 0,
        "sse_keepalive": 0.3,
        "sse_poll": 0.5,
        "shutdown_grace": 0,
    }
    base.update(overrides)
    return load_settings(**base)


@contextlib.asynccontextmanager
async def serving(tmp_path: Path, **overrides: Any) -> AsyncIterator[Api]:
    """An engine we start ourselves (ASGITransport runs no lifespan), then the app's lifespan."""
    settings = _settings(tmp_path, **overrides)
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield Api(client, app, engine, settings)
    finally:
        await engine.stop(0)


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with serving(tmp_path) as running:
        yield running


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail", "instance", "request_id"} <= set(body)
    assert body["request_id"] == response.headers["x-request-id"]
    assert "Traceback" not in response.text
    return dict(body)


# ------------------------------------------------------------------ workflows


async def test_submit_trigger_status_results_round_trip(api: Api) -> None:
    submitted = await api.client.post("/v1/workflow", json=QUICK)
    assert submitted.status_code == 201
    body = submitted.json()
    assert body["status"] == "PENDING" and body["name"] == "quick" and body["version"] == "1"
    assert body["message"] == "Workflow submitted successfully" and body["warnings"] == []
    execution_id = body["execution_id"]

    pending = (await api.client.get(f"/v1/workflows/{execution_id}")).json()
    assert pending["status"] == "PENDING" and pending["node_states"]["greet"] == "PENDING"

    triggered = await api.client.post(
        f"/v1/workflow/trigger/{execution_id}",
        json={"input_params": {"name": "ada"}},
        headers={"X-Request-ID": "trigger-req-1"},
    )
    assert triggered.status_code == 202
    assert triggered.headers["x-request-id"] == "trigger-req-1"
    assert triggered.json() == {
        "execution_id": execution_id,
        "status": "RUNNING",
        "message": "Workflow started successfully",
    }
    detail = await api.until(execution_id, "COMPLETED")
    assert detail["id"] == detail["execution_id"] == execution_id
    assert detail["state"] == "COMPLETED" and detail["workflow"] == "quick"
    assert detail["definition_id"] == body["workflow_definition_id"]
    assert detail["correlation_id"] == "trigger-req-1"
    assert detail["inputs"] == {"name": "ada"}
    assert detail["node_states"] == {
        "input": "COMPLETED",
        "greet": "COMPLETED",
        "output": "COMPLETED",
    }
    greet = detail["nodes"]["greet"]
    assert greet["output"] == "hello ada" and greet["attempt"] == 1
    assert greet["started_at"].endswith("Z") and greet["duration_ms"] >= 0
    assert detail["duration_ms"] is not None and detail["finished_at"].endswith("Z")

    lean = (await api.client.get(f"/v1/workflows/{execution_id}?include_outputs=false")).json()
    assert all("output" not in n for n in lean["nodes"].values())
    assert lean["nodes"]["greet"]["state"] == "COMPLETED"

    results = (await api.client.get(f"/v1/workflows/{execution_id}/results")).json()
    assert results == {
        "execution_id": execution_id,
        "status": "COMPLETED",
        "completed": True,
        "results": {
            "final_status": "workflow_completed",
            "aggregated_results": {"greet": "hello ada"},
        },
        "result": {"greet": "hello ada"},
        "error": None,
        "message": "Results retrieved successfully.",
    }


async def test_reference_001_and_003_bodies(api: Api) -> None:
    # Reference 001's example workflows are accepted as written.
    for name in (
        "parallel_api_fetcher",
        "linear_processing",
        "llm_analysis",
        "simple_llm_workflow",
    ):
        text = (REFERENCE / f"{name}.json").read_text()
        response = await api.client.post(
            "/v1/workflow", content=text, headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 201, response.text
    # Reference 003's trigger body: top-level node ids mapping to config overrides.
    flow = {
        "name": "ref003",
        "dag": {
            "nodes": [
                node("get_posts", value="posts"),
                node("summarize_posts", deps=("get_posts",), value="default"),
                {"id": "output", "handler": "output", "dependencies": ["summarize_posts"]},
            ]
        },
    }
    execution_id = await api.start(
        flow, {"summarize_posts": {"value": "Recent Posts: {{ get_posts.output }}"}}
    )
    await api.until(execution_id, "COMPLETED")
    results = (await api.client.get(f"/v1/workflows/{execution_id}/results")).json()
    assert results["results"]["aggregated_results"] == {"summarize_posts": "Recent Posts: posts"}
    # The explicit form, merged with the reference-003 keys.
    execution_id = await api.start(
        flow,
        {"node_overrides": {"summarize_posts": {"value": "explicit"}}, "input_params": {}},
    )
    await api.until(execution_id, "COMPLETED")
    result = (await api.client.get(f"/v1/workflows/{execution_id}/results")).json()["result"]
    assert result == {"summarize_posts": "explicit"}


async def test_submit_yaml(api: Api) -> None:
    yaml_text = "name: from-yaml\ndag:\n  nodes:\n    - {id: a, handler: noop}\n"
    for content_type in ("application/yaml", "text/yaml", "application/x-yaml"):
        response = await api.client.post(
            "/v1/workflow", content=yaml_text, headers={"Content-Type": content_type}
        )
        assert response.status_code == 201, response.text
        assert response.json()["name"] == "from-yaml"
    # text/plain is what another site's page may send without asking the browser first.
    plain = await api.client.post(
        "/v1/workflow", content=yaml_text, headers={"Content-Type": "text/plain"}
    )
    assert "application/yaml" in assert_problem(plain, 415)["detail"]


async def test_definition_errors_are_listed_per_node_and_field(api: Api) -> None:
    text = (
        "name: broken\n"
        "dag:\n"
        "  nodes:\n"
        "    - {id: a, handler: noop, dependencies: [ghost]}\n"
        "    - {id: b, handler: teleport}\n"
        "    - {id: c, handler: noop, timeout: soon}\n"
    )
    response = await api.client.post(
        "/v1/workflow", content=text, headers={"Content-Type": "application/yaml"}
    )
    problem = assert_problem(response, 422)
    assert problem["type"].endswith("invalid-definition")
    assert problem["title"] == "Invalid workflow definition"
    by_node = {item["node"]: item for item in problem["errors"]}
    assert by_node["a"]["field"] == "dependencies[0]" and by_node["a"]["line"] == 4
    assert by_node["a"]["code"] == "unknown_dependency"
    assert "teleport" in by_node["b"]["message"] and by_node["b"]["line"] == 5
    assert by_node["c"]["field"] == "timeout"
    assert all(
        set(item) == {"code", "message", "node", "field", "line"} for item in problem["errors"]
    )

    cycle = {
        "name": "cyclic",
        "dag": {"nodes": [node("x", deps=("z",)), node("y", deps=("x",)), node("z", deps=("y",))]},
    }
    problem = assert_problem(await api.client.post("/v1/workflow", json=cycle), 422)
    assert "cycle" in json.dumps(problem["errors"]).lower()

    bad_json = await api.client.post(
        "/v1/workflow",
        content='{"name": "x",\n "dag": }',
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(bad_json, 422)
    assert problem["errors"][0]["code"] == "json_syntax" and problem["errors"][0]["line"] == 2

    empty = await api.client.post(
        "/v1/workflow", content=b"", headers={"Content-Type": "application/json"}
    )
    assert_problem(empty, 422)
    binary = await api.client.post(
        "/v1/workflow", content=b"\xff\xfe", headers={"Content-Type": "application/yaml"}
    )
    assert_problem(binary, 422)


async def test_a_body_naming_a_server_file_is_not_read(api: Api, tmp_path: Path) -> None:
    secret = tmp_path / "secret.yaml"
    secret.write_text("name: stolen\ndag:\n  nodes:\n    - {id: a, handler: noop}\n")
    response = await api.client.post(
        "/v1/workflow", content=str(secret), headers={"Content-Type": "application/yaml"}
    )
    problem = assert_problem(response, 422)
    assert "stolen" not in response.text and problem["errors"]


async def test_unsupported_content_types_get_415(api: Api) -> None:
    response = await api.client.post(
        "/v1/workflow", content="<flow/>", headers={"Content-Type": "application/xml"}
    )
    assert_problem(response, 415)
    execution_id = await api.submit(QUICK)
    response = await api.client.post(
        f"/v1/workflow/trigger/{execution_id}",
        content="input_params=1",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415)
    # A body without a content type is refused too (a browser may send one cross-site)...
    response = await api.client.post(
        f"/v1/workflow/trigger/{execution_id}", content=b'{"input_params": {"name": "x"}}'
    )
    assert "needs a Content-Type" in assert_problem(response, 415)["detail"]
    # ... but a call without a body needs none.
    response = await api.client.post(f"/v1/workflow/trigger/{execution_id}")
    assert response.status_code == 202, response.text


async def test_bodies_over_the_limit_get_413(tmp_path: Path) -> None:
    async with serving(tmp_path, max_body_bytes=2048) as api:
        big = {"name": "big", "description": "x" * 4096, "dag": {"nodes": [node("a")]}}
        assert_problem(await api.client.post("/v1/workflow", json=big), 413)

        async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: counted as it comes
            for _ in range(10):
                yield b" " * 512

        response = await api.client.post(
            "/v1/workflow", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert_problem(response, 413)
        execution_id = await api.submit(QUICK)
        response = await api.client.post(
            f"/v1/workflow/trigger/{execution_id}",
            content=chunks(),
            headers={"Content-Type": "application/json"},
        )
        assert_problem(response, 413)


async def test_submit_idempotency(api: Api) -> None:
    first = await api.client.post("/v1/workflow", json=QUICK, headers={"Idempotency-Key": "sub-1"})
    again = await api.client.post("/v1/workflow", json=QUICK, headers={"Idempotency-Key": "sub-1"})
    assert first.status_code == again.status_code == 201
    assert first.json()["execution_id"] == again.json()["execution_id"]
    other = await api.client.post("/v1/workflow", json=QUICK, headers={"Idempotency-Key": "sub-2"})
    assert other.json()["execution_id"] != first.json()["execution_id"]
    assert other.json()["workflow_definition_id"] == first.json()["workflow_definition_id"]
    conflict = await api.client.post(
        "/v1/workflow", json=SLOW, headers={"Idempotency-Key": "sub-1"}
    )
    assert_problem(conflict, 409)


async def test_trigger_conflicts_idempotency_and_input_errors(api: Api) -> None:
    assert_problem(await api.client.post("/v1/workflow/trigger/nope", json={}), 404)
    execution_id = await api.start(QUICK, {"input_params": {"name": "a"}})
    await api.until(execution_id, "COMPLETED")
    again = await api.client.post(f"/v1/workflow/trigger/{execution_id}", json={})
    assert assert_problem(again, 409)["type"].endswith("invalid-transition")
    keyed = await api.client.post(
        f"/v1/workflow/trigger/{execution_id}", json={}, headers={"Idempotency-Key": "t-1"}
    )
    assert keyed.status_code == 202 and keyed.json()["status"] == "COMPLETED"

    typed = {
        "name": "typed",
        "inputs": {"count": {"type": "integer", "required": True}},
        "dag": {"nodes": [node("a")]},
    }
    typed_id = await api.submit(typed)
    missing = assert_problem(
        await api.client.post(f"/v1/workflow/trigger/{typed_id}", json={}), 422
    )
    assert missing["title"] == "Invalid input" and missing["errors"][0]["field"] == "inputs.count"
    wrong = await api.client.post(
        f"/v1/workflow/trigger/{typed_id}", json={"input_params": {"count": "three"}}
    )
    assert assert_problem(wrong, 422)["errors"][0]["code"] == "input_type"
    unknown = await api.client.post(
        f"/v1/workflow/trigger/{typed_id}", json={"input_params": {"count": 1}, "ghost": {"x": 1}}
    )
    assert assert_problem(unknown, 422)["errors"][0]["node"] == "ghost"
    not_object = await api.client.post(f"/v1/workflow/trigger/{typed_id}", json={"a": 5})
    problem = assert_problem(not_object, 422)
    assert problem["errors"][0]["field"] == "body.a"
    not_json = await api.client.post(
        f"/v1/workflow/trigger/{typed_id}",
        content=b"{oops",
        headers={"Content-Type": "application/json"},
    )
    assert assert_problem(not_json, 422)["errors"][0]["code"] == "json_invalid"
    # After all those refusals it is still pending and can be started.
    ok = await api.client.post(
        f"/v1/workflow/trigger/{typed_id}", json={"input_params": {"count": 3}}
    )
    assert ok.status_code == 202


async def test_cancel_pause_resume_retry(api: Api) -> None:
    execution_id = await api.start(SLOW)
    await api.until(execution_id, "RUNNING")
    paused = await api.client.post(f"/v1/workflows/{execution_id}/pause")
    assert paused.status_code == 202 and paused.json()["status"] == "PAUSED"
    assert_problem(await api.client.post(f"/v1/workflows/{execution_id}/pause"), 409)
    resumed = await api.client.post(f"/v1/workflows/{execution_id}/resume")
    assert resumed.status_code == 202 and resumed.json()["status"] in ("RUNNING", "WAITING")
    assert_problem(await api.client.post(f"/v1/workflows/{execution_id}/resume"), 409)
    assert_problem(await api.client.post(f"/v1/workflows/{execution_id}/retry"), 409)
    cancelled = await api.client.delete(f"/v1/workflows/{execution_id}")
    assert cancelled.status_code == 202
    assert cancelled.json() == {
        "execution_id": execution_id,
        "status": "CANCELLED",
        "message": "Workflow cancelled",
    }
    assert_problem(await api.client.delete(f"/v1/workflows/{execution_id}"), 409)
    for verb in ("pause", "resume"):
        assert_problem(await api.client.post(f"/v1/workflows/{execution_id}/{verb}"), 409)
    for missing in ("pause", "resume", "retry"):
        assert_problem(await api.client.post(f"/v1/workflows/ghost/{missing}"), 404)
    assert_problem(await api.client.delete("/v1/workflows/ghost"), 404)

    failing = await api.start(FAILING)
    failed = await api.until(failing, "FAILED")
    assert failed["nodes"]["boom"]["error"]["message"] == "no luck"
    assert "traceback" not in failed["nodes"]["boom"]["error"]
    results = (await api.client.get(f"/v1/workflows/{failing}/results")).json()
    assert results["completed"] is False and results["results"]["final_status"] == "workflow_failed"
    retried = await api.client.post(f"/v1/workflows/{failing}/retry")
    assert retried.status_code == 202
    again = await api.until(failing, "FAILED")
    assert again["nodes"]["boom"]["attempt"] == 2


async def test_list_filters_and_cursor_pagination(api: Api) -> None:
    quick_ids = [await api.start(QUICK, {"input_params": {"name": str(i)}}) for i in range(5)]
    pending_id = await api.submit(SLOW)
    for execution_id in quick_ids:
        await api.until(execution_id, "COMPLETED")

    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2, "workflow": "quick"}
        if cursor:
            params["cursor"] = cursor
        page = (await api.client.get("/v1/workflows", params=params)).json()
        seen += [item["execution_id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3 and seen == list(reversed(quick_ids))  # newest first, no repeats
    item = (await api.client.get("/v1/workflows", params={"limit": 1})).json()["items"][0]
    assert set(item) == {
        "execution_id",
        "workflow",
        "version",
        "definition_id",
        "status",
        "created_at",
        "started_at",
        "finished_at",
        "trigger",
        "parent_execution_id",
    }

    pending = (await api.client.get("/v1/workflows?status=PENDING")).json()["items"]
    assert [i["execution_id"] for i in pending] == [pending_id]
    both = (await api.client.get("/v1/workflows?status=pending&status=COMPLETED")).json()["items"]
    assert len(both) == 6
    future = (
        await api.client.get("/v1/workflows", params={"created_after": "2999-01-01T00:00:00Z"})
    ).json()
    assert future["items"] == [] and future["next_cursor"] is None
    past = (
        await api.client.get("/v1/workflows", params={"created_before": "2000-01-01T00:00:00"})
    ).json()
    assert past["items"] == []

    problem = assert_problem(await api.client.get("/v1/workflows?cursor=%%%garbage"), 422)
    assert problem["errors"][0]["field"] == "query.cursor"
    # Well formed (the document's pattern) but not one we gave out: no such page.
    assert_problem(await api.client.get("/v1/workflows?cursor=bm9wZQ"), 404)
    problem = assert_problem(await api.client.get("/v1/workflows?status=DONE&limit=999"), 422)
    assert {e["field"] for e in problem["errors"]} == {"query.status.0", "query.limit"}


async def test_definitions_list_get_and_start(api: Api) -> None:
    await api.submit(QUICK)
    changed = {**QUICK, "description": "second version"}
    await api.submit(changed)
    listing = (await api.client.get("/v1/definitions", params={"name": "quick"})).json()["items"]
    assert sorted(d["version"] for d in listing) == ["1", "2"]
    assert listing[0]["nodes"] == 3 and listing[0]["dialect"] == "canonical"
    assert listing[0]["source_format"] == "json"
    newest = (await api.client.get("/v1/definitions/quick")).json()
    assert newest["version"] == "2" and newest["spec"]["description"] == "second version"
    first = (await api.client.get("/v1/definitions/quick", params={"version": "1"})).json()
    assert first["version"] == "1"
    assert_problem(await api.client.get("/v1/definitions/nothing"), 404)
    assert_problem(await api.client.get("/v1/definitions/quick?version=9"), 404)
    paged = (await api.client.get("/v1/definitions", params={"limit": 1, "offset": 1})).json()
    assert len(paged["items"]) == 1

    started = await api.client.post(
        "/v1/definitions/quick/executions",
        json={"version": "1", "input_params": {"name": "def"}},
        headers={"Idempotency-Key": "def-1"},
    )
    assert started.status_code == 202 and started.json()["status"] == "RUNNING"
    execution_id = started.json()["execution_id"]
    detail = await api.until(execution_id, "COMPLETED")
    assert detail["version"] == "1" and detail["nodes"]["greet"]["output"] == "hello def"
    repeat = await api.client.post(
        "/v1/definitions/quick/executions",
        json={"version": "1"},
        headers={"Idempotency-Key": "def-1"},
    )
    assert repeat.status_code == 202 and repeat.json()["execution_id"] == execution_id
    assert repeat.json()["status"] == "COMPLETED"
    no_body = await api.client.post("/v1/definitions/quick/executions")
    assert no_body.status_code == 202 and no_body.json()["execution_id"] != execution_id
    assert_problem(await api.client.post("/v1/definitions/none/executions", json={}), 404)
    extra = await api.client.post("/v1/definitions/quick/executions", json={"bogus": 1})
    assert assert_problem(extra, 422)["errors"][0]["field"] == "body.bogus"

    # The same (name, version) with other content is a conflict.
    pinned = {**QUICK, "version": "1", "description": "not the stored one"}
    assert_problem(await api.client.post("/v1/workflow", json=pinned), 409)


# ------------------------------------------------------------------ events


async def test_event_lists(api: Api) -> None:
    execution_id = await api.start(QUICK, {"input_params": {"name": "e"}})
    await api.until(execution_id, "COMPLETED")
    page = (await api.client.get(f"/v1/workflows/{execution_id}/events")).json()
    types = [event["type"] for event in page["items"]]
    assert types[0] == "execution.started" and types[-1] == "execution.completed"
    assert page["next_after"] == page["items"][-1]["seq"]
    first = page["items"][0]
    assert set(first) == {
        "seq",
        "id",
        "type",
        "execution_id",
        "node_id",
        "attempt",
        "at",
        "correlation_id",
        "causation_id",
        "data",
    }
    assert first["at"].endswith("Z") and first["execution_id"] == execution_id
    node_events = [e for e in page["items"] if e["node_id"] == "greet"]
    assert node_events and all(e["causation_id"] for e in node_events[1:])
    later = (
        await api.client.get(
            f"/v1/workflows/{execution_id}/events",
            params={"after": page["items"][2]["seq"], "limit": 2},
        )
    ).json()
    assert [e["seq"] for e in later["items"]] == [e["seq"] for e in page["items"][3:5]]
    everything = (await api.client.get("/v1/events", params={"type": "node.completed"})).json()
    assert {e["node_id"] for e in everything["items"]} == {"input", "greet", "output"}
    empty = (await api.client.get("/v1/events", params={"after": 10_000})).json()
    assert empty == {"items": [], "next_after": 10_000}
    assert_problem(await api.client.get("/v1/workflows/ghost/events"), 404)
    assert_problem(await api.client.get("/v1/workflows/ghost/events/stream"), 404)
    assert_problem(await api.client.get("/v1/events?after=-1"), 422)


def parse_sse(text: str) -> tuple[list[dict[str, Any]], int]:
    """(events, keep-alive comments) of an event-stream body."""
    events: list[dict[str, Any]] = []
    keepalives = 0
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        if block.startswith(":"):
            keepalives += 1
            continue
        fields = dict(line.split(": ", 1) for line in block.splitlines())
        data = json.loads(fields["data"])
        assert int(fields["id"]) == data["seq"] and fields["event"] == data["type"]
        events.append(data)
    return events, keepalives


async def test_event_stream_ends_after_the_final_event_and_resumes(api: Api) -> None:
    flow = {"name": "streamed", "dag": {"nodes": [sleeper("a", 0.8), node("b", deps=("a",))]}}
    execution_id = await api.start(flow)
    url = f"/v1/workflows/{execution_id}/events/stream"
    async with api.client.stream("GET", url) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join([chunk async for chunk in response.aiter_text()])
    events, keepalives = parse_sse(text)
    assert events[-1]["type"] == "execution.completed"
    assert keepalives >= 1  # 0.8 s of silence with a 0.3 s keep-alive
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)

    middle = events[len(events) // 2]["seq"]
    async with api.client.stream("GET", url, headers={"Last-Event-ID": str(middle)}) as response:
        resumed, _ = parse_sse("".join([chunk async for chunk in response.aiter_text()]))
    assert [e["seq"] for e in resumed] == [s for s in seqs if s > middle]
    async with api.client.stream("GET", url, params={"after": seqs[-1]}) as response:
        tail, _ = parse_sse("".join([chunk async for chunk in response.aiter_text()]))
    assert tail == []  # already final: the stream ends at once


async def test_many_streams_of_one_execution_each_get_every_event_once(api: Api) -> None:
    # The streams woken by one commit share what one of them read: none may lose or repeat
    # an event, whichever of them read a page first (global streams and masked callers: the
    # server tests).
    chain = [node("n0", "noop", sleep=0.01)]
    chain += [node(f"n{i}", "noop", deps=(f"n{i - 1}",), sleep=0.01) for i in range(1, 25)]
    execution_id = await api.submit({"name": "watched", "dag": {"nodes": chain}})
    url = f"/v1/workflows/{execution_id}/events/stream"

    async def per_execution(after: int) -> list[int]:
        async with api.client.stream("GET", url, params={"after": after}) as response:
            text = "".join([chunk async for chunk in response.aiter_text()])
        return [e["seq"] for e in parse_sse(text)[0]]

    watchers = [asyncio.create_task(per_execution(0)) for _ in range(12)]
    await asyncio.sleep(0.3)  # every stream open and waiting before the first commit
    trigger = await api.client.post(f"/v1/workflow/trigger/{execution_id}", json={})
    assert trigger.status_code == 202
    seen = await asyncio.wait_for(asyncio.gather(*watchers), 30)
    page = (await api.client.get(f"/v1/workflows/{execution_id}/events?limit=1000")).json()
    journal = [e["seq"] for e in page["items"]]
    assert len(journal) > 50
    assert all(got == journal for got in seen)


# ------------------------------------------------------------------ errors, auth, limits


async def test_unknown_routes_methods_and_query_errors(api: Api) -> None:
    problem = assert_problem(await api.client.get("/v1/nothing-here"), 404)
    assert problem["detail"] == "no route matches GET /v1/nothing-here"
    response = await api.client.put("/v1/workflows/abc")
    problem = assert_problem(response, 405)
    assert response.headers["allow"] == "DELETE, GET"
    assert_problem(await api.client.get("/v1/workflows/ghost"), 404)
    assert_problem(await api.client.get("/v1/workflows/ghost/results"), 404)
    problem = assert_problem(await api.client.get("/v1/workflows/x?include_outputs=maybe"), 422)
    assert problem["errors"][0]["field"] == "query.include_outputs"


async def test_request_ids_are_taken_or_made(api: Api) -> None:
    given = await api.client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await api.client.get("/health", headers={"X-Request-ID": "bad id\twith spaces"})
    assert made.headers["x-request-id"] != "bad id\twith spaces"
    assert len(made.headers["x-request-id"]) == 32


async def test_unexpected_errors_answer_500_without_details(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret internals /etc/shadow")

    api.app.add_api_route("/v1/explode", explode)
    with caplog.at_level(logging.ERROR, logger="orchestrion.api.middleware"):
        response = await api.client.get("/v1/explode", headers={"X-Request-ID": "boom-1"})
    problem = assert_problem(response, 500)
    assert "secret" not in response.text and problem["request_id"] == "boom-1"
    logged = [r for r in caplog.records if getattr(r, "request_id", None) == "boom-1"]
    assert logged and logged[0].exc_info is not None


async def test_api_keys_and_roles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        async with serving(tmp_path / "open"):
            pass
    assert any("NO API KEYS" in r.getMessage() for r in caplog.records)

    keys = "adm-key:admin,op-key:operator,view-key:viewer"
    async with serving(tmp_path, api_keys=keys) as api:
        client = api.client
        response = await client.get("/v1/workflows")
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert_problem(
            await client.get("/v1/workflows", headers={"Authorization": "Bearer nope"}), 401
        )
        assert_problem(
            await client.get("/v1/workflows", headers={"Authorization": "Basic eDp5"}), 401
        )
        viewer = {"Authorization": "Bearer view-key"}
        operator = {"Authorization": "Bearer op-key"}
        admin = {"Authorization": "Bearer adm-key"}
        assert (await client.get("/v1/workflows", headers=viewer)).status_code == 200
        assert_problem(await client.post("/v1/workflow", json=QUICK, headers=viewer), 403)
        for who in (operator, admin):
            submitted = await client.post("/v1/workflow", json=QUICK, headers=who)
            assert submitted.status_code == 201
        execution_id = submitted.json()["execution_id"]
        assert_problem(await client.delete(f"/v1/workflows/{execution_id}", headers=viewer), 403)
        assert (
            await client.delete(f"/v1/workflows/{execution_id}", headers=operator)
        ).status_code == 202
        assert (await client.get("/health")).status_code == 200  # probes need no key
        assert (await client.get("/metrics")).status_code == 200
        assert_problem(await client.get("/v1/health"), 401)
        assert (await client.get("/v1/health", headers=viewer)).status_code == 200


async def test_required_headers_on_mutating_calls(tmp_path: Path) -> None:
    async with serving(tmp_path, required_headers="X-Request-Source,X-Client-ID") as api:
        response = await api.client.post("/v1/workflow", json=QUICK, headers={"X-Client-ID": "c"})
        problem = assert_problem(response, 400)
        assert "X-Request-Source" in problem["detail"]
        assert [e["field"] for e in problem["errors"]] == ["X-Request-Source"]
        assert (await api.client.get("/v1/workflows")).status_code == 200  # reads are free
        both = {"X-Client-ID": "c", "X-Request-Source": "tests"}
        assert (await api.client.post("/v1/workflow", json=QUICK, headers=both)).status_code == 201
        assert_problem(await api.client.delete("/v1/workflows/x"), 400)


async def test_rate_limit_per_address_when_the_api_is_open(tmp_path: Path) -> None:
    async with serving(tmp_path, rate_limit_per_second=1, rate_limit_burst=3) as api:
        alice = {"X-Client-ID": "alice"}
        codes = [
            (await api.client.get("/v1/workflows", headers=alice)).status_code for _ in range(3)
        ]
        assert codes == [200, 200, 200]
        limited = await api.client.get("/v1/workflows", headers=alice)
        problem = assert_problem(limited, 429)
        assert int(limited.headers["retry-after"]) >= 1 and "rate limit" in problem["detail"]
        # X-Client-ID is the client's to choose: it does not make a new bucket.
        other = await api.client.get("/v1/workflows", headers={"X-Client-ID": "bob"})
        assert_problem(other, 429)
        for _ in range(5):  # health and metrics are never limited
            assert (await api.client.get("/health", headers=alice)).status_code == 200
            assert (await api.client.get("/metrics", headers=alice)).status_code == 200


def test_service_settings_are_validated() -> None:
    settings = load_settings(api_keys=" k1:admin , k2:Viewer ", required_headers="X-A, X-B")
    assert settings.api_keys == {"k1": "admin", "k2": "viewer"}
    assert settings.required_headers == ("X-A", "X-B")
    assert "k1" not in repr(settings)
    for bad in (
        {"api_keys": "k1:root"},
        {"api_keys": "nokey"},
        {"required_headers": "Bad Header"},
        {"port": 70000},
        {"rate_limit_burst": -1},
    ):
        with pytest.raises(ConfigurationError):
            load_settings(**bad)


# ------------------------------------------------------------------ health, lifespan, metrics


async def test_app_owning_its_engine_stops_gracefully_and_resumes(tmp_path: Path) -> None:
    settings = _settings(tmp_path, shutdown_grace=0.1)
    flow = {
        "name": "resumable",
        "dag": {"nodes": [sleeper("slow", 1.0), node("after", deps=("slow",))]},
    }

    async def with_app(body: Callable[[httpx.AsyncClient], Awaitable[Any]]) -> Any:
        app = create_app(settings=settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                health = await client.get("/health")
                assert health.status_code == 200 and health.json()["status"] == "ok"
                result = await body(client)
        # After shutdown the same app reports itself degraded.
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api"
        ) as client:
            down = await client.get("/health")
            assert down.status_code == 503 and down.json()["status"] == "degraded"
            assert down.json()["checks"]["engine"]["status"] == "fail"
        return result

    async def start(client: httpx.AsyncClient) -> str:
        execution_id = (await client.post("/v1/workflow", json=flow)).json()["execution_id"]
        await client.post(f"/v1/workflow/trigger/{execution_id}")
        return str(execution_id)

    execution_id = await with_app(start)

    async def finish(client: httpx.AsyncClient) -> dict[str, Any]:
        for _ in range(300):
            body = (await client.get(f"/v1/workflows/{execution_id}")).json()
            if body["status"] == "COMPLETED":
                return dict(body)
            await asyncio.sleep(0.02)
        raise AssertionError(body)

    detail = await with_app(finish)
    assert detail["node_states"] == {"slow": "COMPLETED", "after": "COMPLETED"}


async def test_health_reports_each_check(api: Api) -> None:
    for path in ("/health", "/v1/health"):
        body = (await api.client.get(path)).json()
        assert body["status"] == "ok" and body["version"]
        assert set(body["checks"]) == {"database", "engine", "workers", "python_threads"}
        assert body["checks"]["database"]["info"]["latency_ms"] >= 0
        assert body["checks"]["workers"]["info"]["concurrency"] == api.engine.concurrency


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


async def test_metrics_move_as_a_workflow_runs(api: Api) -> None:
    before = _samples((await api.client.get("/metrics")).text)
    names = {name for name, _ in before}
    assert {
        "orchestrion_queue_depth",
        "orchestrion_nodes_in_flight",
        "orchestrion_executions_live",
    } <= names

    flaky = {
        "name": "metered",
        "dag": {
            "nodes": [
                node("f", "python", function="flaky", params={"failures": 1}),
                sleeper("s", 0.5, deps=("f",)),
            ]
        },
        "defaults": {"retry": {"max_attempts": 3, "initial_delay": "10ms"}},
    }
    execution_id = await api.start(flaky)
    saw_in_flight = False
    deadline = time.monotonic() + 20
    while True:
        samples = _samples((await api.client.get("/metrics")).text)
        saw_in_flight |= samples[("orchestrion_nodes_in_flight", ())] >= 1
        completed = samples.get(("orchestrion_executions_total", (("status", "completed"),)), 0)
        if completed >= 1:
            break
        assert time.monotonic() < deadline, samples
        await asyncio.sleep(0.05)
    await api.until(execution_id, "COMPLETED")
    assert saw_in_flight
    assert samples[("orchestrion_executions_total", (("status", "running"),))] >= 1
    assert samples[("orchestrion_executions_total", (("status", "pending"),))] >= 1
    assert (
        samples[("orchestrion_nodes_total", (("handler", "python"), ("state", "completed")))] == 2
    )
    assert samples[("orchestrion_node_retries_total", (("handler", "python"),))] == 1
    assert samples[("orchestrion_node_duration_seconds_count", (("handler", "python"),))] == 3
    assert samples[("orchestrion_node_duration_seconds_sum", (("handler", "python"),))] >= 0.5
    assert samples[("orchestrion_executions_live", ())] == 0
    assert samples[("orchestrion_queue_depth", ())] == 0
    key = (
        "orchestrion_http_requests_total",
        (("method", "POST"), ("route", "/v1/workflow/trigger/{execution_id}"), ("status", "202")),
    )
    assert samples[key] == 1
    assert (
        samples[
            (
                "orchestrion_http_request_duration_seconds_count",
                (("method", "GET"), ("route", "/metrics")),
            )
        ]
        >= 1
    )
    await api.client.get("/no/such/path")
    after = _samples((await api.client.get("/metrics")).text)
    assert (
        after[
            (
                "orchestrion_http_requests_total",
                (("method", "GET"), ("route", "<unmatched>"), ("status", "404")),
            )
        ]
        == 1
    )


# ------------------------------------------------------------------ logs


async def test_logs_carry_execution_and_correlation_ids(
    api: Api, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="orchestrion.api"):
        execution_id = await api.start(
            QUICK, {"input_params": {"name": "l"}}, **{"X-Request-ID": "corr-9"}
        )
        await api.until(execution_id, "COMPLETED")
        for _ in range(100):  # the node log is written off the engine loop
            if any(getattr(r, "event", None) == "execution.completed" for r in caplog.records):
                break
            await asyncio.sleep(0.02)
    transitions = [r for r in caplog.records if r.name == "orchestrion.api.transitions"]
    node_lines = [r for r in transitions if getattr(r, "node_id", None) == "greet"]
    assert {getattr(r, "state", None) for r in node_lines} >= {"queued", "running", "completed"}
    assert all(getattr(r, "execution_id", None) == execution_id for r in transitions)
    assert all(getattr(r, "correlation_id", None) == "corr-9" for r in transitions)
    assert all(r.levelno == logging.INFO for r in transitions)
    access = [r for r in caplog.records if r.name == "orchestrion.api.access"]
    trigger = [r for r in access if getattr(r, "request_id", None) == "corr-9"]
    assert trigger and getattr(trigger[0], "route", None) == "/v1/workflow/trigger/{execution_id}"
    assert getattr(trigger[0], "status", None) == 202
    assert getattr(trigger[0], "duration_ms", -1) >= 0


def test_json_log_lines() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    stream = io.StringIO()
    try:
        configure_logging("json", "INFO", stream=stream)
        logging.getLogger("orchestrion.test").info(
            "node %s done", "a", extra={"execution_id": "e1", "correlation_id": "c1"}
        )
        try:
            raise ValueError("inner")
        except ValueError:
            logging.getLogger("orchestrion.test").exception("failed")
        configure_logging("console", "INFO", stream=stream)
        logging.getLogger("orchestrion.test").info("plain", extra={"execution_id": "e2"})
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.getLogger("uvicorn.access").disabled = False
    lines = stream.getvalue().splitlines()
    first = json.loads(lines[0])
    assert first["message"] == "node a done" and first["level"] == "INFO"
    assert first["execution_id"] == "e1" and first["correlation_id"] == "c1"
    assert "ValueError: inner" in json.loads(lines[1])["exception"]
    assert lines[-1].endswith("plain execution_id=e2")


# ------------------------------------------------------------------ OpenAPI


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # FastAPI keeps included routers nested
            yield from _api_routes(route.original_router.routes)


async def test_openapi_lists_every_route_with_models_and_problems(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    paths = document["paths"]
    routes = list(_api_routes(api.app.routes))
    assert len(routes) >= 19
    schemas = document["components"]["schemas"]
    for route in routes:
        for method in route.methods:
            operation = paths[route.path_format][method.lower()]  # without convertors
            responses = operation["responses"]
            success = [code for code in responses if code.startswith("2")]
            assert success, (method, route.path)
            content = responses[success[0]]["content"]
            assert content, (method, route.path)
            if "application/json" in content:
                ref = content["application/json"]["schema"]["$ref"]
                assert ref.split("/")[-1] in schemas
            for code, response in responses.items():
                if int(code) >= 400 and route.path != "/health" and code != "503":
                    assert PROBLEM in response["content"], (method, route.path, code)
            if is_api_path(route.path):  # /v1 and the compatibility paths
                assert {"401", "403", "422", "429", "500"} <= set(responses)
    assert "HTTPValidationError" not in schemas
    trigger = paths["/v1/workflow/trigger/{execution_id}"]["post"]
    assert "TriggerRequest" in json.dumps(trigger["requestBody"]["content"]["application/json"])
    submit = paths["/v1/workflow"]["post"]["requestBody"]["content"]
    assert {"application/json", "application/yaml"} <= set(submit)
    assert "text/event-stream" in paths["/v1/events/stream"]["get"]["responses"]["200"]["content"]
    assert (await api.client.get("/docs")).status_code == 200
