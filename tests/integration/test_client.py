"""``orchestrion.client`` against the real API application, in process (httpx ASGITransport).

The engine runs on a SQLite file; every call goes through FastAPI's routing, validation,
problem documents, auth and rate limiting exactly as over the network. (ASGITransport buffers
whole responses, so only per-execution event streams, which end, are followed here; the
endless global stream is covered by tests/e2e/test_client_server.py.)
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.api.app import create_app
from orchestrion.client import (
    Accepted,
    ApiConnectionError,
    ApiError,
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    InvalidDefinition,
    InvalidRequest,
    NotFound,
    RateLimited,
    ServiceUnavailable,
    Unauthorized,
    UnsupportedMediaType,
)
from orchestrion.client.errors import error_from_response
from orchestrion.client.models import timestamp
from orchestrion.client.sse import SseDecoder, event_from_sse
from orchestrion.core.events import retry_after_seconds
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError, ExecutionNotFound, InvalidTransition
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import Settings

SWITCHES: dict[str, bool] = {}

GREET: dict[str, Any] = {
    "name": "greet",
    "inputs": {"name": {"type": "string", "default": "world"}},
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "hello",
                "handler": "noop",
                "dependencies": ["input"],
                "config": {"value": "hello {{ input.output.name }}"},
            },
            {"id": "output", "handler": "output", "dependencies": ["hello"]},
        ]
    },
}
GREET_YAML = """\
name: greet-yaml
dag:
  nodes:
    - id: input
      handler: input
    - id: hello
      handler: noop
      dependencies: [input]
      config: {value: "hi {{ input.output.name }}"}
"""
SLOW: dict[str, Any] = {
    "name": "slow",
    "dag": {
        "nodes": [
            {"id": "first", "handler": "noop", "config": {"value": 1, "sleep": 0.3}},
            {"id": "second", "handler": "noop", "dependencies": ["first"], "config": {"value": 2}},
            {"id": "third", "handler": "noop", "dependencies": ["second"], "config": {"sleep": 5}},
        ]
    },
}
SWITCHED: dict[str, Any] = {
    "name": "switched",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop", "config": {"value": "kept"}},
            {
                "id": "b",
                "handler": "python",
                "dependencies": ["a"],
                "config": {"function": "client_switch", "params": {"switch": "b"}},
            },
        ]
    },
}


@function("client_switch", replace=True)
def client_switch(ctx: NodeContext, switch: str) -> str:
    from orchestrion.errors import PermanentNodeError

    if not SWITCHES.get(switch):
        raise PermanentNodeError(f"switch {switch} is off")
    return f"{switch} on"


@pytest.fixture(autouse=True)
def _reset() -> None:
    SWITCHES.clear()


@dataclass
class Served:
    """The app over a started engine, reachable in process through ``transport``."""

    engine: Engine
    transport: httpx.ASGITransport
    stack: AsyncExitStack

    async def client(
        self,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        rate_limit_retries: int = 10,
    ) -> AsyncClient:
        connected = AsyncClient(
            "http://orchestrion.test",
            api_key=api_key,
            headers=headers,
            rate_limit_retries=rate_limit_retries,
            transport=self.transport,
        )
        return await self.stack.enter_async_context(connected)


Serve = Callable[..., Awaitable[Served]]


@pytest.fixture
async def serve(tmp_path: Path) -> AsyncIterator[Serve]:
    """Start an engine and the app over it, with the settings given (no rate limit by default)."""
    async with AsyncExitStack() as stack:

        async def start(**settings: Any) -> Served:
            options = {"rate_limit_per_second": 0, "rate_limit_burst": 0, **settings}
            config = Settings(database_url=f"sqlite:///{tmp_path / 'api.db'}", **options)
            engine = await stack.enter_async_context(Engine(settings=config))
            app = create_app(engine=engine, settings=config)
            await stack.enter_async_context(app.router.lifespan_context(app))
            return Served(engine, httpx.ASGITransport(app=app), stack)

        yield start


@pytest.fixture
async def served(serve: Serve) -> Served:
    return await serve()


@pytest.fixture
async def client(served: Served) -> AsyncClient:
    return await served.client()


# ---------------------------------------------------------------------------- workflows


async def test_run_end_to_end_matches_the_engine_result(
    client: AsyncClient, served: Served
) -> None:
    execution = await client.run(GREET, {"name": "ada"}, timeout=30)
    assert execution.ok and execution.status is ExecutionStatus.COMPLETED
    assert execution.result == {"hello": "hello ada"}
    assert execution.node_states == dict.fromkeys(("input", "hello", "output"), NodeState.COMPLETED)
    assert execution.outputs["hello"] == "hello ada"
    assert execution.inputs == {"name": "ada"}
    assert execution.correlation_id

    local = (await served.engine.result(execution.execution_id)).to_dict()
    remote = execution.to_dict()
    assert set(remote) == set(local)
    for key in ("execution_id", "workflow", "version", "status", "result", "error"):
        assert remote[key] == local[key], key
    for key in ("created_at", "started_at", "finished_at"):
        assert timestamp(remote[key]) == pytest.approx(timestamp(local[key]), abs=1e-3), key
    assert list(remote["nodes"]) == list(local["nodes"])
    for node_id, node in remote["nodes"].items():
        assert set(node) == set(local["nodes"][node_id])
        for key in ("state", "attempt", "output", "error", "wait_reason", "compensation"):
            assert node[key] == local["nodes"][node_id][key]


async def test_submit_then_trigger_with_inputs_overrides_and_idempotency(
    client: AsyncClient,
) -> None:
    first = await client.submit(GREET, idempotency_key="sub-1")
    again = await client.submit(GREET, idempotency_key="sub-1")
    assert again.execution_id == first.execution_id
    assert first.status is ExecutionStatus.PENDING and first.name == "greet"
    pending = await client.status(first.execution_id)
    assert pending.status is ExecutionStatus.PENDING

    started = await client.trigger(
        first.execution_id,
        {"name": "bob"},
        {"hello": {"value": "overridden {{ input.output.name }}"}},
        idempotency_key="trig-1",
    )
    assert isinstance(started, Accepted) and started.status is ExecutionStatus.RUNNING
    repeat = await client.trigger(first.execution_id, {"name": "bob"}, idempotency_key="trig-1")
    assert repeat.execution_id == first.execution_id
    with pytest.raises(Conflict) as caught:
        await client.trigger(first.execution_id)
    assert isinstance(caught.value, InvalidTransition) and caught.value.status == 409

    done = await client.wait(first.execution_id, timeout=30)
    assert done.result == {"hello": "overridden bob"}


async def test_yaml_text_and_files_are_submitted_as_written(
    client: AsyncClient, tmp_path: Path
) -> None:
    from_text = await client.submit(GREET_YAML)
    assert from_text.name == "greet-yaml"
    yaml_file = tmp_path / "flow.yaml"
    yaml_file.write_text(GREET_YAML.replace("greet-yaml", "greet-file"))
    from_path = await client.submit(yaml_file)
    from_str_path = await client.submit(str(yaml_file))
    assert from_path.name == from_str_path.name == "greet-file"
    assert from_path.workflow_definition_id == from_str_path.workflow_definition_id
    json_file = tmp_path / "flow.json"
    json_file.write_text(json.dumps({**GREET, "name": "greet-json"}))
    assert (await client.submit(json_file)).name == "greet-json"
    with pytest.raises(FileNotFoundError):
        await client.submit(tmp_path / "missing.yaml")


async def test_status_without_outputs_and_results(client: AsyncClient) -> None:
    execution = await client.run(GREET, timeout=30)
    lean = await client.status(execution.execution_id, include_outputs=False)
    assert lean.status is ExecutionStatus.COMPLETED
    assert all(node.output is None for node in lean.nodes.values())
    full = await client.status(execution.execution_id)
    assert full.nodes["hello"].output == "hello world"
    results = await client.results(execution.execution_id)
    assert results.completed and results.final_status == "workflow_completed"
    assert results.result == {"hello": "hello world"}
    assert results.status is ExecutionStatus.COMPLETED


async def test_wait_times_out_with_timeout_error(client: AsyncClient) -> None:
    submitted = await client.submit(SLOW)
    await client.trigger(submitted.execution_id)
    with pytest.raises(TimeoutError):
        await client.wait(submitted.execution_id, timeout=0.2, poll_interval=0.05)
    await client.cancel(submitted.execution_id)


async def test_cancel_pause_resume_and_their_conflicts(client: AsyncClient) -> None:
    submitted = await client.submit(SLOW)
    await client.trigger(submitted.execution_id)
    paused = await client.pause(submitted.execution_id)
    assert paused.execution_id == submitted.execution_id
    await _until(client, submitted.execution_id, ExecutionStatus.PAUSED)
    with pytest.raises(Conflict):
        await client.pause(submitted.execution_id)
    await client.resume(submitted.execution_id)
    await _until(client, submitted.execution_id, ExecutionStatus.RUNNING)
    cancelled = await client.cancel(submitted.execution_id)
    assert cancelled.status is ExecutionStatus.CANCELLED
    final = await client.wait(submitted.execution_id, timeout=30)
    assert final.status is ExecutionStatus.CANCELLED and not final.ok
    with pytest.raises(Conflict):
        await client.cancel(submitted.execution_id)
    with pytest.raises(Conflict):
        await client.resume(submitted.execution_id)


async def _until(client: AsyncClient, execution_id: str, status: ExecutionStatus) -> None:
    for _ in range(200):
        if (await client.status(execution_id, include_outputs=False)).status is status:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{execution_id} never became {status}")


async def test_retry_after_a_fix_keeps_completed_nodes(client: AsyncClient) -> None:
    failed = await client.run(SWITCHED, timeout=30)
    assert failed.status is ExecutionStatus.FAILED
    assert failed.nodes["b"].state is NodeState.FAILED
    assert "switch b is off" in (failed.nodes["b"].error or {})["message"]
    with pytest.raises(Conflict):
        await client.retry((await client.run(GREET, timeout=30)).execution_id)
    SWITCHES["b"] = True
    accepted = await client.retry(failed.execution_id)
    assert accepted.execution_id == failed.execution_id
    done = await client.wait(failed.execution_id, timeout=30)
    assert done.ok and done.nodes["b"].output == "b on"
    assert done.nodes["a"].attempt == 1


async def test_list_executions_filters_and_follows_cursors(client: AsyncClient) -> None:
    ids = [(await client.run(GREET, timeout=30)).execution_id for _ in range(5)]
    failed = (await client.run(SWITCHED, timeout=30)).execution_id
    page = await client.list_executions(workflow="greet", limit=2)
    assert [item.execution_id for item in page.items] == ids[::-1][:2]
    assert page.next_cursor
    second = await client.list_executions(workflow="greet", limit=2, cursor=page.next_cursor)
    assert [item.execution_id for item in second.items] == ids[::-1][2:4]
    every = [item async for item in client.iter_executions(workflow="greet", page_size=2)]
    assert [item.execution_id for item in every] == ids[::-1]
    assert all(item.status is ExecutionStatus.COMPLETED for item in every)
    assert every[0].workflow == "greet" and every[0].created_at is not None
    only_failed = await client.list_executions(status="failed")
    assert [item.execution_id for item in only_failed.items] == [failed]
    both = await client.list_executions(status=[ExecutionStatus.FAILED, "COMPLETED"], limit=50)
    assert len(both.items) == 6


async def test_definitions_listed_fetched_and_started(client: AsyncClient) -> None:
    first = await client.submit(GREET)
    changed = {**GREET, "description": "second version"}
    second = await client.submit(changed)
    assert (first.version, second.version) == ("1", "2")
    listed = await client.list_definitions("greet")
    assert sorted(d.version for d in listed) == ["1", "2"]
    assert all(d.nodes == 3 and d.name == "greet" for d in listed)
    newest = await client.get_definition("greet")
    assert newest.version == "2" and newest.node_ids == ["input", "hello", "output"]
    older = await client.get_definition("greet", version="1")
    assert older.id == first.workflow_definition_id
    started = await client.start_definition(
        "greet", version="1", input_params={"name": "cy"}, idempotency_key="start-1"
    )
    again = await client.start_definition(
        "greet", version="1", input_params={"name": "cy"}, idempotency_key="start-1"
    )
    assert again.execution_id == started.execution_id
    done = await client.wait(started.execution_id, timeout=30)
    assert (
        done.result == {"hello": "hello cy"} and done.definition_id == first.workflow_definition_id
    )
    with pytest.raises(NotFound):
        await client.get_definition("no-such-workflow")


async def test_events_pages_and_the_execution_stream(client: AsyncClient) -> None:
    execution = await client.run(GREET, timeout=30)
    page = await client.events(execution.execution_id)
    types = [event.type for event in page.items]
    assert types[0] == "execution.started" or "execution.started" in types
    assert types[-1] == "execution.completed"
    seqs = [event.seq for event in page.items]
    assert seqs == sorted(seqs) and page.next_after == seqs[-1]
    later = await client.events(execution.execution_id, after=seqs[2], limit=2)
    assert [event.seq for event in later.items] == seqs[3:5]
    everything = await client.events(types=["execution.completed"])
    assert [event.execution_id for event in everything.items] == [execution.execution_id]

    async with aclosing(client.stream_events(execution.execution_id)) as stream:
        streamed = [event async for event in stream]
    assert [event.seq for event in streamed] == seqs
    assert streamed[-1].is_final
    completed = [e for e in streamed if e.type == "node.completed"]
    assert {e.node_id for e in completed} == {"input", "hello", "output"}
    assert all(e.node_state is NodeState.COMPLETED for e in completed)
    async with aclosing(client.stream_events(execution.execution_id, seqs[-3])) as stream:
        resumed = [event.seq async for event in stream]
    assert resumed == seqs[-2:]
    assert (await client.wait(execution.execution_id, stream=True)).ok


async def test_health_and_metrics(client: AsyncClient) -> None:
    await client.run(GREET, timeout=30)
    health = await client.health()
    assert health.ok and health.status == "ok"
    assert {"database", "engine"} <= set(health.checks)
    text = await client.metrics()
    assert "orchestrion_executions_total" in text


# ---------------------------------------------------------------------------- errors


async def test_unknown_ids_are_not_found_and_execution_not_found(client: AsyncClient) -> None:
    calls: list[Callable[[str], Awaitable[object]]] = [
        client.status,
        client.results,
        client.trigger,
        client.cancel,
        client.retry,
        client.pause,
        client.events,
    ]
    for call in calls:
        with pytest.raises(NotFound) as caught:
            await call("nope")
        assert isinstance(caught.value, ExecutionNotFound)
        assert caught.value.status == 404 and caught.value.request_id
        assert "nope" in str(caught.value)


async def test_invalid_definition_names_node_and_field(client: AsyncClient) -> None:
    bad = {"name": "bad", "dag": {"nodes": [{"id": "a", "handler": "noop", "retries": 3}]}}
    with pytest.raises(InvalidDefinition) as caught:
        await client.submit(bad)
    error = caught.value
    assert isinstance(error, DefinitionError) and isinstance(error, InvalidRequest)
    assert error.status == 422 and error.issues
    assert any(issue.node == "a" and "retries" in str(issue) for issue in error.issues)

    cycle = (
        "name: c\ndag:\n  nodes:\n"
        "    - {id: a, handler: noop, dependencies: [b]}\n"
        "    - {id: b, handler: noop, dependencies: [a]}\n"
    )
    with pytest.raises(InvalidDefinition) as cyclic:
        await client.submit(cycle)
    assert "cycle" in str(cyclic.value).lower() or any(
        "cycle" in str(i).lower() for i in cyclic.value.issues
    )


async def test_invalid_inputs_are_an_invalid_request(client: AsyncClient) -> None:
    strict = {**GREET, "inputs": {"name": {"type": "string", "required": True}}}
    submitted = await client.submit(strict)
    with pytest.raises(InvalidRequest) as caught:
        await client.trigger(submitted.execution_id, {"name": 5})
    assert not isinstance(caught.value, InvalidDefinition)
    assert caught.value.errors and caught.value.status == 422


async def test_api_keys_roles_and_required_headers(serve: Serve) -> None:
    served = await serve(api_keys={"k-admin": "admin", "k-op": "operator", "k-view": "viewer"})
    anonymous = await served.client()
    with pytest.raises(Unauthorized) as caught:
        await anonymous.list_executions()
    assert caught.value.status == 401
    assert (await anonymous.health()).ok  # health is never behind a key
    viewer = await served.client(api_key="k-view")
    assert (await viewer.list_executions()).items == []
    with pytest.raises(Forbidden):
        await viewer.submit(GREET)
    operator = await served.client(api_key="k-op")
    assert (await operator.run(GREET, timeout=30)).ok
    with pytest.raises(Unauthorized):
        await (await served.client(api_key="k-unknown")).status("x")


async def test_required_headers_are_sent_from_the_constructor(serve: Serve) -> None:
    served = await serve(required_headers="X-Request-Source,X-Client-ID")
    bare = await served.client()
    with pytest.raises(BadRequest) as caught:
        await bare.submit(GREET)
    assert "X-Request-Source" in str(caught.value) or "X-Client-ID" in str(caught.value)
    dressed = await served.client(
        headers={"X-Request-Source": "tests", "X-Client-ID": "client-suite"}
    )
    assert (await dressed.run(GREET, timeout=30)).ok


async def test_rate_limited_carries_retry_after(serve: Serve) -> None:
    served = await serve(rate_limit_per_second=0.5, rate_limit_burst=2)
    client = await served.client(rate_limit_retries=0)
    with pytest.raises(RateLimited) as caught:
        for _ in range(5):
            await client.list_executions()
    assert caught.value.status == 429
    assert caught.value.retry_after is not None and caught.value.retry_after > 0


async def test_a_rate_limited_call_is_sent_again_after_retry_after(serve: Serve) -> None:
    served = await serve(rate_limit_per_second=2, rate_limit_burst=1)
    client = await served.client()
    started = time.monotonic()
    pages = [await client.list_executions() for _ in range(3)]  # the 2nd and 3rd wait
    assert len(pages) == 3
    assert time.monotonic() - started >= 1.0  # Retry-After is whole seconds


async def test_connection_failure_names_the_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    async with AsyncClient(url, timeout=2) as dead:
        with pytest.raises(ApiConnectionError) as caught:
            await dead.health()
    assert url in str(caught.value) and caught.value.status is None
    with Client(f"127.0.0.1:{port}", timeout=2) as sync_dead, pytest.raises(ApiConnectionError):
        sync_dead.status("x")


# ---------------------------------------------------------------------------- pure parts


def _response(
    status: int, body: Any = None, headers: dict[str, str] | None = None, text: str | None = None
) -> httpx.Response:
    request = httpx.Request("GET", "http://orchestrion.test/v1/x")
    if text is not None:
        return httpx.Response(status, text=text, headers=headers, request=request)
    return httpx.Response(status, json=body, headers=headers, request=request)


@pytest.mark.parametrize(
    ("status", "kind", "engine_kind"),
    [
        (400, BadRequest, ApiError),
        (401, Unauthorized, ApiError),
        (403, Forbidden, ApiError),
        (404, NotFound, ExecutionNotFound),
        (409, Conflict, InvalidTransition),
        (415, UnsupportedMediaType, ApiError),
        (422, InvalidRequest, ApiError),
        (429, RateLimited, ApiError),
        (503, ServiceUnavailable, ApiError),
        (418, ApiError, ApiError),
    ],
)
def test_problem_statuses_map_to_error_types(
    status: int, kind: type[ApiError], engine_kind: type[Exception]
) -> None:
    problem = {
        "type": "urn:orchestrion:problem:x",
        "title": "T",
        "status": status,
        "detail": f"detail {status}",
        "instance": "/v1/x",
        "request_id": "r-1",
    }
    error = error_from_response(_response(status, problem, {"Retry-After": "3"}))
    assert type(error) is kind and isinstance(error, engine_kind)
    assert str(error) == f"detail {status}" and error.request_id == "r-1"
    if isinstance(error, RateLimited):
        assert error.retry_after == 3.0


def test_definition_problems_become_definition_errors() -> None:
    problem = {
        "type": "urn:orchestrion:problem:invalid-definition",
        "title": "Invalid workflow definition",
        "status": 422,
        "detail": "2 problems, listed in errors",
        "errors": [
            {"code": "unknown_key", "message": "unknown key", "node": "a", "field": "retries"},
            {"code": "cycle", "message": "cycle a -> b -> a", "line": 4},
        ],
    }
    error = error_from_response(_response(422, problem))
    assert isinstance(error, InvalidDefinition) and isinstance(error, DefinitionError)
    assert [str(issue) for issue in error.issues] == [
        "node 'a', field 'retries': unknown key",
        "line 4: cycle a -> b -> a",
    ]
    plain = error_from_response(_response(502, text="<html>bad gateway</html>"))
    assert plain.status == 502 and "bad gateway" in str(plain)


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    assert retry_after_seconds("2.5") == 2.5
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None


def test_sse_decoder_follows_the_event_stream_rules() -> None:
    decoder = SseDecoder()
    lines = [
        ": keep-alive",
        "retry: 1500",
        "id: 7",
        "event: node.completed",
        'data: {"seq": 7, "id": "e7", "type": "node.completed",',
        'data:  "execution_id": "x", "node_id": "a", "data": {"state": "COMPLETED"}}',
        "",
        "",
        "data: not json",
        "",
    ]
    events = [e for e in (decoder.feed(line) for line in lines) if e is not None]
    assert [e.id for e in events] == ["7", "7"] and decoder.retry == 1500
    first = event_from_sse(events[0])
    assert first is not None and first.seq == 7 and first.node_state is NodeState.COMPLETED
    assert event_from_sse(events[1]) is None
