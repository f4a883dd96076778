"""The life of definition versions through the engine, embedded (memory, SQLite) and in
scale-out mode: the active version is what events, schedules and starts naming no version
use; a deprecated one is never chosen again; running executions keep their version."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import ExecutionNotFound
from scaleout import engine_for


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'versions.db'}"
    return "memory://" if request.param == "memory" else "scaleout"


@pytest.fixture
async def engine(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with engine_for(database_url, request) as engine:
        yield engine


def flow(version: str, cron: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "lifecycle",
        "version": version,
        "triggers": [
            {"type": "event", "event_type": "policy.updated"},
            {"type": "scheduled", "name": "tick", "schedule": cron},
        ],
        "dag": {"nodes": list(nodes) or [{"id": "a", "handler": "noop"}]},
    }


async def _started_version(engine: Engine, event_id: str) -> str:
    emitted = await engine.emit("policy.updated", {}, event_id)
    [started] = emitted.executions
    record = await engine.reads.execution(started.execution_id)
    return (await engine.reads.definition(record.definition_id)).version


async def test_the_active_version_is_what_events_schedules_and_unversioned_starts_use(
    engine: Engine,
) -> None:
    one = await engine.submit(flow("1", "0 0 1 */3 *"))
    two = await engine.submit(flow("2", "0 0 * * *"))
    assert one.created_by == two.created_by == getpass.getuser()  # one's own, locally
    assert await _started_version(engine, "e1") == "2"  # none activated: the newest
    [schedule] = await engine.schedules.all()
    assert (schedule.definition_id, schedule.spec["schedule"]) == (two.id, "0 0 * * *")

    activated = await engine.activate("lifecycle", "1", by="alice")
    assert (activated.status, activated.status_changed_by) == ("active", "alice")
    assert await _started_version(engine, "e2") == "1"
    [schedule] = await engine.schedules.all()
    assert (schedule.definition_id, schedule.spec["schedule"]) == (one.id, "0 0 1 */3 *")
    assert (await engine.reads.find_definition("lifecycle")).version == "1"
    explicit = await engine.start_execution(two)  # an explicit start may name any version
    assert explicit.definition_id == two.id

    versions, active = await engine.versions("lifecycle")
    assert [(v.version, v.status) for v in versions] == [("1", "active"), ("2", "available")]
    assert active == one.id

    await engine.deprecate("lifecycle", "1", by="bob")
    assert await _started_version(engine, "e3") == "2"  # never a deprecated one
    await engine.deprecate("lifecycle", "2", by="bob")
    versions, active = await engine.versions("lifecycle")
    assert active is None and {v.status for v in versions} == {"deprecated"}
    assert (await engine.emit("policy.updated", {}, "e4")).executions == []
    assert await engine.schedules.all() == []  # nothing active: no schedule
    with pytest.raises(ExecutionNotFound, match="no active version"):
        await engine.reads.find_definition("lifecycle")
    deprecated = await engine.start_execution(one)  # still startable by version
    assert (await engine.wait(deprecated.id, timeout=30)).status is ExecutionStatus.COMPLETED
    with pytest.raises(ExecutionNotFound):
        await engine.activate("lifecycle", "7")
    with pytest.raises(ExecutionNotFound):
        await engine.versions("nothing-of-that-name")


async def test_a_running_execution_keeps_its_version(engine: Engine) -> None:
    waits = {"id": "gate", "handler": "approval", "config": {"message": "go?"}}
    one = await engine.submit(flow("1", "0 0 1 1 *", waits))
    record = await engine.start_execution(one)
    await _until_waiting(engine, record.id)
    two = await engine.submit(flow("2", "0 0 1 1 *", {"id": "other", "handler": "noop"}))
    await engine.activate("lifecycle", "2")
    await engine.deprecate("lifecycle", "1")
    await engine.decide(record.id, "gate", approved=True, by="ops")
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED
    assert (await engine.reads.execution(record.id)).definition_id == one.id
    assert set(result.nodes) == {"gate"}  # the graph it started with, not version 2's
    assert two.id != one.id


async def _until_waiting(engine: Engine, execution_id: str) -> None:
    for _ in range(500):
        if (await engine.reads.execution(execution_id)).status is ExecutionStatus.WAITING:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("never waited")


async def test_the_versions_api_records_who_and_checks_roles(tmp_path: Path) -> None:
    import httpx

    from orchestrion.api import create_app
    from orchestrion.settings import load_settings

    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}",
        api_keys="op-key:operator:alice,view-key:viewer",
        rate_limit_per_second=0,
        shutdown_grace=0,
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    op = {"Authorization": "Bearer op-key"}
    viewer = {"Authorization": "Bearer view-key"}
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as api:
                for version in ("1", "2"):
                    body = flow(version, "0 0 1 1 *")
                    submitted = await api.post("/v1/workflow", json=body, headers=op)
                    assert submitted.status_code == 201, submitted.text
                listed = await api.get("/v1/definitions/lifecycle/versions", headers=viewer)
                assert listed.status_code == 200, listed.text
                page = listed.json()
                assert page["active_version"] == "2"
                assert [(v["version"], v["status"], v["active"], v["created_by"])
                        for v in page["items"]] == [
                    ("1", "available", False, "alice"), ("2", "available", True, "alice")
                ]  # fmt: skip
                path = "/v1/definitions/lifecycle/versions/1/activate"
                assert (await api.post(path, headers=viewer)).status_code == 403
                done = await api.post(path, headers=op)
                assert done.status_code == 200, done.text
                assert (done.json()["status"], done.json()["active"]) == ("active", True)
                assert done.json()["status_changed_by"] == "alice"
                shown = await api.get("/v1/definitions/lifecycle", headers=viewer)
                assert shown.json()["version"] == "1"  # the active one
                gone = await api.post("/v1/definitions/lifecycle/versions/1/deprecate", headers=op)
                assert gone.json()["status"] == "deprecated" and gone.json()["active"] is False
                missing = await api.post(
                    "/v1/definitions/lifecycle/versions/9/activate", headers=op
                )
                assert missing.status_code == 404
                unknown = await api.get("/v1/definitions/nothing/versions", headers=viewer)
                assert unknown.status_code == 404
                slashed = {**flow("1", "0 0 1 1 *"), "name": "team/dora"}
                assert (await api.post("/v1/workflow", json=slashed, headers=op)).status_code == 201
                both = await api.get("/v1/definitions/team/dora/versions", headers=viewer)
                assert both.json()["name"] == "team/dora"
                one = await api.get("/v1/definitions/team/dora", headers=viewer)
                assert one.json()["name"] == "team/dora"
                path = "/v1/definitions/team/dora/versions/1/activate"
                assert (await api.post(path, headers=op)).json()["active"] is True
    finally:
        await engine.stop(0)
