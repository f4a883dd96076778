"""Each attempt's rendered inputs through the real parts: memory, SQLite and PostgreSQL stores, the
engine running python and http nodes, a secret sent to a loopback listener, sealing at rest,
and the API in process (masking by role) and its Python client."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopback_listener import Listener, serve_listener
from orchestrion.api import create_app
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings
from orchestrion.store.schema import metadata

SECRET = "Tok3n-Sup3r-S3cret-42"
TRANSFORMS = [SECRET, SECRET[::-1], SECRET.lower(), SECRET.upper()]
KEYS = "adm-key:admin,view-key:viewer"
ADMIN = {"Authorization": "Bearer adm-key"}
VIEWER = {"Authorization": "Bearer view-key"}
SEEN: dict[str, int] = {}


@function("t_ri_greets", replace=True)
def t_ri_greets(ctx: NodeContext, who: str = "", times: int = 1) -> str:
    seen = SEEN.get(ctx.execution_id, 0)
    SEEN[ctx.execution_id] = seen + 1
    if seen == 0:
        raise ConnectionError("first attempt fails")
    return who * times


def greet_flow(classification: str | None = None) -> dict[str, Any]:
    greet: dict[str, Any] = {
        "id": "greet",
        "handler": "python",
        "dependencies": ["input"],
        "retry": {"max_attempts": 2, "initial_delay": 0.01, "retry_on": ["all"]},
        "config": {
            "function": "t_ri_greets",
            "params": {"who": "{{ input.name }} Lovelace", "times": "{{ input.times }}"},
        },
    }
    if classification:
        greet["data_classification"] = classification
    nodes = [{"id": "input", "handler": "input"}, greet]
    nodes.append({"id": "done", "handler": "noop", "dependencies": ["greet"]})
    return {"name": "rendered", "dag": {"nodes": nodes}}


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return "memory://"
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 's.db'}"
    return str(request.getfixturevalue("postgres_url"))


async def _stored(database_url: str, tmp_path: Path) -> bytes:
    """Every byte the store holds: the SQLite files, or every PostgreSQL row as text."""
    if database_url == "memory://":
        return b""  # nothing outside this process: the API answer is checked
    if database_url.startswith("sqlite"):
        return b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("s.db"))
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        rows = []
        for table in metadata.sorted_tables:
            text = await conn.fetchval(
                f"SELECT coalesce(string_agg(t::text, ' '), '') FROM {table.name} t"
            )
            rows.append(text.encode())
    finally:
        await conn.close()
    return b"\n".join(rows)


@contextlib.asynccontextmanager
async def api(engine: Engine) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.ASGITransport]]:
    app = create_app(engine, engine.settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            yield client, transport


def _settings(database_url: str) -> Any:
    return load_settings(
        database_url=database_url, rate_limit_per_second=0, shutdown_grace=0, api_keys=KEYS
    )


async def test_each_attempt_keeps_the_config_it_rendered(database_url: str) -> None:
    from orchestrion.client import AsyncClient

    async with Engine(settings=_settings(database_url)) as engine:
        result = await engine.run(greet_flow(), {"name": "Ada", "times": 2})
        assert result.status is ExecutionStatus.COMPLETED, result.error
        eid = result.execution_id
        started = await engine.store.list_events(eid, types=["node.started"])
        inputs = {(e.node_id, e.attempt): (e.data or {}).get("inputs") for e in started}
        rendered = {"function": "t_ri_greets", "params": {"who": "Ada Lovelace", "times": 2}}
        assert inputs == {
            ("input", 1): None,  # an empty config: nothing kept
            ("greet", 1): rendered,
            ("greet", 2): rendered,
            ("done", 1): None,
        }
        async with api(engine) as (client, transport):
            answer = await client.get(f"/v1/workflows/{eid}/nodes/greet/inputs", headers=VIEWER)
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["node_id"] == "greet"
            assert [(i["attempt"], i["inputs"]) for i in body["items"]] == [
                (1, rendered),
                (2, rendered),
            ]
            none = await client.get(f"/v1/workflows/{eid}/nodes/done/inputs", headers=VIEWER)
            assert [i["inputs"] for i in none.json()["items"]] == [None]
            ghost = await client.get(f"/v1/workflows/{eid}/nodes/ghost/inputs", headers=VIEWER)
            assert ghost.status_code == 404  # no such node: named, not an empty answer
            assert "has no node 'ghost'" in ghost.json()["detail"]
            missing = await client.get("/v1/workflows/nope/nodes/greet/inputs", headers=VIEWER)
            assert missing.status_code == 404
            long = await client.get(f"/v1/workflows/{eid}/nodes/{'n' * 129}/inputs", headers=ADMIN)
            assert long.status_code == 422
            assert (await client.get(f"/v1/workflows/{eid}/nodes/greet/inputs")).status_code == 401
            # The event journal does not carry them: node data is served where outputs are.
            events = await client.get(f"/v1/workflows/{eid}/events?limit=1000", headers=ADMIN)
            assert "Ada Lovelace" not in events.text
            async with AsyncClient("http://api", api_key="view-key", transport=transport) as c:
                attempts = await c.node_inputs(eid, "greet")
            assert [(a.attempt, a.inputs) for a in attempts] == [(1, rendered), (2, rendered)]
            assert all(a.started_at > 0 for a in attempts)


@pytest.fixture
def listener() -> Iterator[Listener]:
    yield from serve_listener()


async def test_a_secret_is_never_stored_nor_served(
    database_url: str, tmp_path: Path, listener: Listener, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ORCHESTRION_SECRET_TOKEN", SECRET)
    policy = tmp_path / "governance.yaml"
    policy.write_text(f"version: 1\nsecrets:\n  TOKEN:\n    hosts: ['127.0.0.1:{listener.port}']\n")
    governance = Governance.load(policy, trusted=False, environ={})
    headers = {
        "Authorization": "Bearer {{ secrets.TOKEN }}",
        "X-Keyed": "{{ secrets['TOKEN'] }}",
        "X-Plain": "{{ input.name }}",
    }
    node = {
        "id": "call",
        "handler": "http",
        "dependencies": ["input"],
        "retry": {"max_attempts": 1},
        "config": {"url": listener.url + "/api", "method": "POST", "headers": headers},
    }
    flow = {"name": "secret", "dag": {"nodes": [{"id": "input", "handler": "input"}, node]}}
    async with Engine(settings=_settings(database_url), governance=governance) as engine:
        result = await engine.run(flow, {"name": "Ada"}, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED, result.nodes["call"].error
        [request] = listener.received
        assert request["headers"]["Authorization"] == f"Bearer {SECRET}"  # it was sent
        async with api(engine) as (client, _):
            answer = await client.get(
                f"/v1/workflows/{result.execution_id}/nodes/call/inputs", headers=ADMIN
            )
        stored = await _stored(database_url, tmp_path)
    [item] = answer.json()["items"]
    assert item["inputs"]["headers"] == {**headers, "X-Plain": "Ada"}  # secrets as declared
    assert item["inputs"]["url"] == listener.url + "/api"
    for value in TRANSFORMS:
        assert value not in answer.text, value
        assert value.encode() not in stored, value
    if database_url != "memory://":
        assert b"X-Plain" in stored  # the rendered headers were stored


async def test_a_classified_nodes_inputs_are_sealed_at_rest_and_masked_for_a_viewer(
    tmp_path: Path,
) -> None:
    environ = {"ORCHESTRION_ENCRYPTION_KEYS": f"k1:{KeyRing.generate_key()}"}
    governance = Governance.load(environ=environ)
    settings = _settings(f"sqlite:///{tmp_path / 's.db'}")
    async with Engine(settings=settings, governance=governance) as engine:
        result = await engine.run(greet_flow("pii"), {"name": "Zebedee", "times": 1})
        assert result.ok, result.error
        eid = result.execution_id
        async with api(engine) as (client, _):
            admin = await client.get(f"/v1/workflows/{eid}/nodes/greet/inputs", headers=ADMIN)
            viewer = await client.get(f"/v1/workflows/{eid}/nodes/greet/inputs", headers=VIEWER)
    assert [i["inputs"]["params"]["who"] for i in admin.json()["items"]] == [
        "Zebedee Lovelace",
        "Zebedee Lovelace",
    ]
    assert [i["inputs"] for i in viewer.json()["items"]] == [{"masked": "pii"}] * 2
    raw = await _stored(settings.database_url, tmp_path)
    assert b"Zebedee" not in raw  # the inputs, the outputs, and each rendered config
