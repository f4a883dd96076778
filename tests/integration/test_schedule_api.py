"""``/v1/schedules`` in process through ``AsyncClient``: the verbs, roles, and bad ids."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from orchestrion.api.app import create_app
from orchestrion.client import ApiError, AsyncClient, Forbidden, NotFound
from orchestrion.client.schedules import Schedule, ScheduleFiring
from orchestrion.engine.facade import Engine
from orchestrion.settings import Settings

FLOW = {
    "name": "report",
    "triggers": [{"type": "scheduled", "name": "nightly", "schedule": "0 2 * * *"}],
    "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
}
KEYS = "op-key:operator,view-key:viewer"
OPERATOR = {"Authorization": "Bearer op-key"}


@pytest.fixture
async def clients(tmp_path: Path) -> AsyncIterator[tuple[AsyncClient, AsyncClient]]:
    async with AsyncExitStack() as stack:
        config = Settings(
            database_url=f"sqlite:///{tmp_path / 'api.db'}",
            api_keys=KEYS,
            rate_limit_per_second=0,
            rate_limit_burst=0,
        )
        engine = await stack.enter_async_context(Engine(settings=config))
        app = create_app(engine=engine, settings=config)
        await stack.enter_async_context(app.router.lifespan_context(app))
        await engine.submit(FLOW)
        transport = httpx.ASGITransport(app=app)
        made = [
            await stack.enter_async_context(
                AsyncClient("http://orchestrion.test", api_key=key, transport=transport)
            )
            for key in ("op-key", "view-key")
        ]
        yield made[0], made[1]


async def test_the_verbs_through_the_client(clients: tuple[AsyncClient, AsyncClient]) -> None:
    operator, viewer = clients
    (listed,) = await viewer.schedules()
    assert (listed.id, listed.state, listed.schedule) == ("report:nightly", "active", "0 2 * * *")
    assert listed.next_tick_at is not None
    paused = await operator.schedule_action("report:nightly", "pause")
    assert isinstance(paused, Schedule) and paused.state == "paused"
    assert paused.next_tick_at is None
    fired = await operator.schedule_action("report:nightly", "trigger")
    assert isinstance(fired, ScheduleFiring) and fired.status == "pending"
    shown = await viewer.schedule("report:nightly")
    assert [f.status for f in shown.recent_firings] == ["pending"]
    assert (await operator.schedule_action("report:nightly", "resume")).state == "active"
    assert (await operator.schedule_action("report:nightly", "delete")).state == "deleted"
    assert await viewer.schedules() == []


async def test_roles_and_unknown_ids(clients: tuple[AsyncClient, AsyncClient]) -> None:
    operator, viewer = clients
    with pytest.raises(Forbidden):
        await viewer.schedule_action("report:nightly", "pause")
    for bad in ("nope:nothing", "x" * 300, "report:nightly/../x"):
        with pytest.raises(NotFound):
            await operator.schedule_action(bad, "trigger")
    with pytest.raises(ApiError, match="control characters"):  # refused before any route
        await operator.schedule_action("report:nightly\u0000", "pause")
    with pytest.raises(ValueError, match="unknown schedule verb"):
        await operator.schedule_action("report:nightly", "explode")


@pytest.mark.parametrize("name", ["team/report", "a/b/c", "q?x#y", "../up", "pct%2F"])
async def test_names_with_a_slash_or_url_characters_are_reachable_on_every_route(
    clients: tuple[AsyncClient, AsyncClient], name: str
) -> None:
    operator, viewer = clients
    await operator.submit({**FLOW, "name": name})
    schedule_id = f"{name}:nightly"
    assert schedule_id in [s.id for s in await viewer.schedules()]
    for verb, state in (("pause", "paused"), ("resume", "active")):
        changed = await operator.schedule_action(schedule_id, verb)
        assert isinstance(changed, Schedule) and changed.state == state
    assert (await viewer.schedule(schedule_id)).id == schedule_id
    assert (await viewer.get_definition(name)).name == name
    started = await operator.start_definition(name)
    # SwarmLite's status and stop take a workflow's name: no call of the client, so raw.
    transport = operator._http._transport  # the app in process, with the operator's key
    async with httpx.AsyncClient(
        transport=transport, base_url="http://orchestrion.test", headers=OPERATOR
    ) as raw:
        quoted = quote(name, safe="")
        status = await raw.get(f"/workflows/{quoted}/status")
        assert status.status_code == 200, status.text
        assert status.json()["execution_id"] == started.execution_id
        stopped = await raw.post(f"/workflows/{quoted}/stop")
        assert stopped.status_code in (202, 409), stopped.text
    deleted = await operator.schedule_action(schedule_id, "delete")
    assert isinstance(deleted, Schedule) and deleted.state == "deleted"


async def test_a_verb_s_path_answers_only_the_verb_s_method(
    clients: tuple[AsyncClient, AsyncClient],
) -> None:
    operator, _ = clients
    raw = operator._http  # the app in process, with the operator's key
    for path, allowed in (
        ("/v1/schedules/report:nightly/pause", "POST"),
        ("/v1/schedules/team/report:nightly/trigger", "POST"),
        ("/v1/definitions/report/executions", "POST"),
        ("/v1/definitions/team/report", "GET"),
    ):
        answer = await raw.request("OPTIONS", path)
        assert answer.status_code == 405 and answer.headers["allow"] == allowed, answer.text
