"""Node logs through the real parts: every store adapter (memory, SQLite, PostgreSQL), the
engine running python functions that log, sealing at rest, and the API in process (pages,
SSE streams, masking by role)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from orchestrion.api import create_app
from orchestrion.core.events import NodeLogged
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import StoreError
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings
from orchestrion.store.base import CommitBatch, DefinitionRecord, ExecutionRecord, LogFilter, Store

log = logging.getLogger("tests.node_logs")
T0 = 1_700_000_000.0
FLAKY: dict[str, int] = {}


@pytest.fixture(autouse=True)
def _capture_node_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Embedded engines keep node log lines only when asked (a process-wide factory).
    monkeypatch.setenv("ORCHESTRION_CAPTURE_NODE_LOGS", "true")


@pytest.fixture(autouse=True)
def _info_records() -> Any:
    previous = log.level
    log.setLevel(logging.INFO)
    yield
    log.setLevel(previous)


@function("t_logs_twice", replace=True)
def t_logs_twice(ctx: NodeContext, who: str = "world") -> str:
    log.info("hello %s from %s", who, ctx.node_id)
    log.warning("mail me at ada@example.com")
    return who


@function("t_logs_async", replace=True)
async def t_logs_async(ctx: NodeContext) -> int:
    for i in range(3):
        log.info("async %d", i)
        await asyncio.sleep(0)
    return 3


@function("t_logs_then_fails_once", replace=True)
def t_logs_then_fails_once(ctx: NodeContext) -> str:
    log.info("attempt %d starts", ctx.attempt)
    seen = FLAKY.get(ctx.execution_id, 0)
    FLAKY[ctx.execution_id] = seen + 1
    if seen == 0:
        raise ConnectionError("first attempt fails")
    return "ok"


@function("t_logs_slowly", replace=True)
async def t_logs_slowly(ctx: NodeContext, lines: int = 4, pause: float = 0.4) -> int:
    for i in range(lines):
        log.info("slow line %d", i)
        await asyncio.sleep(pause)
    return lines


def flow(name: str = "logs", classification: str | None = None) -> dict[str, Any]:
    retry = {"max_attempts": 2, "initial_delay": 0.01, "retry_on": ["all"]}
    greet: dict[str, Any] = {
        "id": "greet",
        "handler": "python",
        "config": {"function": "t_logs_twice", "params": {"who": "Ada"}},
    }
    if classification:
        greet["data_classification"] = classification
    return {
        "name": name,
        "dag": {
            "nodes": [
                greet,
                {"id": "count", "handler": "python", "config": {"function": "t_logs_async"}},
                {
                    "id": "flaky",
                    "handler": "python",
                    "retry": retry,
                    "config": {"function": "t_logs_then_fails_once"},
                },
                {"id": "quiet", "handler": "noop", "dependencies": ["greet"]},
            ]
        },
    }


# ---------------------------------------------------------------- every store adapter


async def _seed(store: Store, *ids: str) -> None:
    await store.put_definition(
        DefinitionRecord(
            id="def-1",
            name="wf",
            version="1",
            spec={"name": "wf", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}},
            content_hash="h",
            source_format="yaml",
            dialect="canonical",
            created_at=T0,
        )
    )
    for execution_id in ids:
        await store.create_execution(
            ExecutionRecord(
                id=execution_id,
                definition_id="def-1",
                status=ExecutionStatus.PENDING,
                created_at=T0,
            )
        )


def _lines(*messages: str, at: float = T0) -> tuple[dict[str, Any], ...]:
    return tuple(
        {"at": at + i, "level": "INFO", "logger": "app", "message": m}
        for i, m in enumerate(messages)
    )


async def test_stores_keep_lines_in_order_and_filter_them(store: Store) -> None:
    await _seed(store, "e1", "e2")
    batch = CommitBatch()
    batch.logs.append(("e1", NodeLogged("a", 1, T0, _lines("a1-0", "a1-1"))))
    batch.logs.append(("e2", NodeLogged("a", 1, T0, _lines("other"))))
    batch.logs.append(("e1", NodeLogged("b", 1, T0, _lines("b1-0"))))
    assert batch  # lines alone make a batch worth committing
    await store.commit(batch)
    second = CommitBatch()
    second.logs.append(("e1", NodeLogged("a", 2, T0, _lines("a2-0 ünïcode ✓"))))
    await store.commit(second)

    every = await store.list_node_logs(LogFilter("e1", limit=100))
    assert [(line.node_id, line.attempt, line.message) for line in every] == [
        ("a", 1, "a1-0"),
        ("a", 1, "a1-1"),
        ("b", 1, "b1-0"),
        ("a", 2, "a2-0 ünïcode ✓"),
    ]
    assert all(x.seq < y.seq for x, y in itertools.pairwise(every))
    first = every[0]
    assert (first.execution_id, first.at, first.level, first.logger) == ("e1", T0, "INFO", "app")

    of_a = await store.list_node_logs(LogFilter("e1", node_id="a"))
    assert [line.message for line in of_a] == ["a1-0", "a1-1", "a2-0 ünïcode ✓"]
    second_try = await store.list_node_logs(LogFilter("e1", node_id="a", attempt=2))
    assert [line.message for line in second_try] == ["a2-0 ünïcode ✓"]
    page = await store.list_node_logs(LogFilter("e1", after_seq=every[1].seq, limit=1))
    assert [line.message for line in page] == ["b1-0"]
    assert await store.list_node_logs(LogFilter("e1", node_id="nope")) == []
    assert await store.list_node_logs(LogFilter("unknown")) == []


async def test_stores_refuse_lines_of_unknown_executions(store: Store) -> None:
    await _seed(store, "e1")
    batch = CommitBatch()
    batch.logs.append(("e1", NodeLogged("a", 1, T0, _lines("kept?"))))
    batch.logs.append(("ghost", NodeLogged("a", 1, T0, _lines("nowhere"))))
    with pytest.raises(StoreError, match="ghost"):
        await store.commit(batch)
    assert await store.list_node_logs(LogFilter("e1")) == []  # all or nothing


async def test_stores_fit_odd_lines_to_their_columns(store: Store) -> None:
    await _seed(store, "e1")
    odd = (
        {"at": "not a time", "level": "X" * 40, "logger": "L" * 400, "message": 12},
        {"message": None},
    )
    batch = CommitBatch()
    batch.logs.append(("e1", NodeLogged("a", 1, T0 + 5, odd)))
    await store.commit(batch)
    first, second = await store.list_node_logs(LogFilter("e1"))
    assert (first.at, first.level, len(first.logger), first.message) == (
        T0 + 5,
        "X" * 16,
        255,
        "12",
    )
    assert (second.level, second.logger, second.message) == ("INFO", "", "")


async def test_purging_an_execution_purges_its_lines(store: Store) -> None:
    await _seed(store, "e1")
    batch = CommitBatch()
    batch.logs.append(("e1", NodeLogged("a", 1, T0, _lines("gone soon"))))
    await store.commit(batch)
    from orchestrion.core.events import Record

    done = CommitBatch(correlation={"e1": None})
    record = Record(type="execution.completed", at=T0 + 1, status=ExecutionStatus.COMPLETED)
    done.add("e1", record, "ev-1", None)
    await store.commit(done)
    assert await store.purge_executions(T0 + 100, None, None, T0 + 1000) == 1
    assert await store.list_node_logs(LogFilter("e1")) == []


# ---------------------------------------------------------------- the engine


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'logs.db'}"
    return str(request.getfixturevalue("postgres_url"))


async def test_a_run_stores_each_attempts_lines(database_url: str) -> None:
    async with Engine(database_url) as engine:
        result = await engine.run(flow(), {})
        assert result.status is ExecutionStatus.COMPLETED, result.error
        lines = await engine.reads.node_logs(LogFilter(result.execution_id, limit=1000))
    by_node: dict[tuple[str, int], list[str]] = {}
    for line in lines:
        by_node.setdefault((line.node_id, line.attempt), []).append(line.message)
    # The default policy masks personal data in every captured line.
    assert by_node[("greet", 1)] == ["hello Ada from greet", "mail me at [email]"]
    assert by_node[("count", 1)] == ["async 0", "async 1", "async 2"]
    assert by_node[("flaky", 1)] == ["attempt 1 starts"]
    assert by_node[("flaky", 2)] == ["attempt 2 starts"]
    assert ("quiet", 1) not in by_node
    assert {line.logger for line in lines} == {"tests.node_logs"}


async def test_lines_of_a_running_attempt_are_stored_before_it_ends(database_url: str) -> None:
    slow = {
        "name": "slow",
        "dag": {
            "nodes": [{"id": "s", "handler": "python", "config": {"function": "t_logs_slowly"}}]
        },
    }
    async with Engine(database_url) as engine:
        record = await engine.start_execution(await engine.submit(slow))
        deadline = time.monotonic() + 10
        while True:
            lines = await engine.reads.node_logs(LogFilter(record.id))
            if lines:
                break
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        running = await engine.reads.execution(record.id)
        assert running.status is ExecutionStatus.RUNNING  # seen live, not at the end
        assert lines[0].message == "slow line 0"
        result = await engine.wait(record.id)
        assert result.ok
        every = await engine.reads.node_logs(LogFilter(record.id))
        assert [line.message for line in every] == [f"slow line {i}" for i in range(4)]


async def test_a_classified_executions_lines_are_sealed_at_rest(tmp_path: Path) -> None:
    db = tmp_path / "sealed.db"
    environ = {"ORCHESTRION_ENCRYPTION_KEYS": f"k1:{KeyRing.generate_key()}"}
    governance = Governance.load(environ=environ)
    async with Engine(f"sqlite:///{db}", governance=governance) as engine:
        result = await engine.run(flow("sealed", classification="pii"), {})
        assert result.ok, result.error
        lines = await engine.reads.node_logs(LogFilter(result.execution_id, node_id="greet"))
        # Read back in the clear (the engine's store opens them); "Ada" is no pattern kind.
        assert lines[0].message == "hello Ada from greet"
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("sealed.db"))
    assert b"hello Ada from greet" not in raw
    assert b"attempt 1 starts" not in raw  # every node of a classified execution is sealed


# ---------------------------------------------------------------- the API, in process

KEYS = "adm-key:admin,view-key:viewer,op-key:operator"
ADMIN = {"Authorization": "Bearer adm-key"}
VIEWER = {"Authorization": "Bearer view-key"}
OPERATOR = {"Authorization": "Bearer op-key", "X-Request-Source": "t", "X-Client-ID": "t"}


@contextlib.asynccontextmanager
async def api(
    tmp_path: Path,
) -> AsyncIterator[tuple[httpx.AsyncClient, Engine, httpx.ASGITransport]]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        api_keys=KEYS,
        sse_poll=0.2,
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, engine, transport
    finally:
        await engine.stop(0)


async def test_the_api_pages_lines_and_masks_them_for_non_admins(tmp_path: Path) -> None:
    async with api(tmp_path) as (client, engine, _):
        result = await engine.run(flow("api", classification="pii"), {})
        assert result.ok, result.error
        eid = result.execution_id

        admin = (await client.get(f"/v1/workflows/{eid}/nodes/greet/logs", headers=ADMIN)).json()
        assert [item["message"] for item in admin["items"]] == [
            "hello Ada from greet",
            "mail me at [email]",  # masked when captured: the process's own masking
        ]
        item = admin["items"][0]
        assert set(item) == {"seq", "node_id", "attempt", "at", "level", "logger", "message"}
        assert item["node_id"] == "greet" and item["attempt"] == 1 and item["level"] == "INFO"
        assert item["at"].endswith("Z") or item["at"].endswith("+00:00")
        assert admin["next_after"] == admin["items"][-1]["seq"]

        viewer = (await client.get(f"/v1/workflows/{eid}/nodes/greet/logs", headers=VIEWER)).json()
        assert {item["message"] for item in viewer["items"]} == {"[masked: pii]"}
        flaky = await client.get(f"/v1/workflows/{eid}/logs?node=flaky&attempt=2", headers=VIEWER)
        assert [i["message"] for i in flaky.json()["items"]] == ["attempt 2 starts"]

        every = (await client.get(f"/v1/workflows/{eid}/logs?limit=2", headers=ADMIN)).json()
        assert len(every["items"]) == 2
        rest = await client.get(
            f"/v1/workflows/{eid}/logs?after={every['next_after']}&limit=1000", headers=ADMIN
        )
        assert len(every["items"]) + len(rest.json()["items"]) == 7

        missing = await client.get("/v1/workflows/nope/logs", headers=ADMIN)
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("application/problem+json")
        for bad in ("attempt=0", "limit=0", "limit=1001", "after=-1", "attempt=x"):
            response = await client.get(f"/v1/workflows/{eid}/logs?{bad}", headers=ADMIN)
            assert response.status_code == 422, (bad, response.text)
        too_long = await client.get(f"/v1/workflows/{eid}/nodes/{'n' * 129}/logs", headers=ADMIN)
        assert too_long.status_code == 422
        unknown = await client.get(f"/v1/workflows/{eid}/nodes/ghost/logs", headers=ADMIN)
        assert unknown.status_code == 404  # no such node: named, not an empty page
        assert "has no node 'ghost'" in unknown.json()["detail"]
        anonymous = await client.get(f"/v1/workflows/{eid}/logs")
        assert anonymous.status_code == 401


def _sse_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for block in text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in block.splitlines() if ": " in line and line[0] != ":"
        )
        if fields.get("event") == "log":
            data = json.loads(fields["data"])
            assert int(fields["id"]) == data["seq"]
            out.append(data)
    return out


async def test_the_log_stream_sends_every_line_and_ends_with_the_execution(tmp_path: Path) -> None:
    slow = {
        "name": "slow-api",
        "dag": {
            "nodes": [
                {
                    "id": "s",
                    "handler": "python",
                    "config": {"function": "t_logs_slowly", "params": {"lines": 3, "pause": 0.3}},
                }
            ]
        },
    }
    async with api(tmp_path) as (client, engine, _):
        record = await engine.start_execution(await engine.submit(slow))
        path = f"/v1/workflows/{record.id}/nodes/s/logs/stream"
        # httpx's ASGI transport hands the body over once it ended: that lines arrive while
        # the node runs is seen through a real server (tests/e2e/test_node_logs_server.py).
        response = await client.get(path, headers=VIEWER, timeout=20)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.text
        lines = _sse_lines(body)
        assert [line["message"] for line in lines] == [f"slow line {i}" for i in range(3)]
        # Resumed after the first line: only the others.
        resumed = await client.get(
            path, headers={**VIEWER, "Last-Event-ID": str(lines[0]["seq"])}, timeout=20
        )
        assert [line["message"] for line in _sse_lines(resumed.text)] == [
            "slow line 1",
            "slow line 2",
        ]
        every = await client.get(f"/v1/workflows/{record.id}/logs/stream", headers=VIEWER)
        assert len(_sse_lines(every.text)) == 3


async def test_what_a_built_in_handler_logs_is_its_nodes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pii import echo_server

    caplog.set_level(logging.INFO, logger="httpx")  # as the CLI and the service make INFO lines
    with echo_server() as url:
        call = {
            "name": "call",
            "dag": {
                "nodes": [
                    {
                        "id": "post",
                        "handler": "http",
                        "config": {"url": f"{url}/orders/42", "method": "POST", "json": {"n": 1}},
                    }
                ]
            },
        }
        async with Engine(f"sqlite:///{tmp_path / 'http.db'}") as engine:
            result = await engine.run(call, {})
            assert result.ok, result.error
            lines = await engine.reads.node_logs(LogFilter(result.execution_id, node_id="post"))
    requests = [line for line in lines if line.logger == "httpx"]
    assert len(requests) == 1, lines
    assert requests[0].level == "INFO"
    assert requests[0].message.startswith(f'HTTP Request: POST {url}/orders/42 "HTTP/1.')
    assert requests[0].message.endswith(' 200 OK"')


async def test_the_async_client_pages_and_follows_lines(tmp_path: Path) -> None:
    from orchestrion.client import AsyncClient

    async with api(tmp_path) as (_, engine, transport):
        result = await engine.run(flow("async-client"), {})
        assert result.ok, result.error
        eid = result.execution_id
        async with AsyncClient("http://api", api_key="view-key", transport=transport) as client:
            page = await client.logs(eid, "flaky")
            assert [(line.attempt, line.message) for line in page.items] == [
                (1, "attempt 1 starts"),
                (2, "attempt 2 starts"),
            ]
            assert page.next_after == page.items[-1].seq
            assert isinstance(page.items[0].at, float) and page.items[0].at > 0
            second = await client.logs(eid, attempt=2)
            assert [line.node_id for line in second.items] == ["flaky"]
            followed = [line async for line in client.follow_logs(eid, "greet")]
            assert [line.message for line in followed] == [
                "hello Ada from greet",
                "mail me at [email]",
            ]
            assert followed[0].to_dict()["at"].endswith("+00:00")
