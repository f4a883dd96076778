"""One trigger of a pending execution wins in scale-out mode, on real PostgreSQL and Redis.

Two API processes (engines that do not drive, each with the app ``orchestrion serve`` serves)
and an orchestrator share the database. A second trigger of an execution, on the same API
process or another, at once or a moment later, is refused with 409 (or, with an
``Idempotency-Key``, answered as a repeat) and leaves the stored inputs as the run used them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.settings import Settings
from scaleout import scaleout_engine, scaleout_settings

OPERATOR = {"Authorization": "Bearer op-key"}

CHARGE = {
    "name": "charge",
    "inputs": {"amount": {"type": "integer"}},
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "charge",
                "handler": "noop",
                "dependencies": ["input"],
                "config": {"value": "charged {{ input.amount }}"},
            },
            {"id": "output", "handler": "output", "dependencies": ["charge"]},
        ]
    },
}


@contextlib.asynccontextmanager
async def api_process(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The API as ``orchestrion serve`` runs it in scale-out mode: an engine that does not
    drive, the app's lifespan started by hand (ASGITransport runs none)."""
    engine = Engine(settings=settings, drive=False)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client
    finally:
        await engine.stop(0)


@contextlib.asynccontextmanager
async def cluster(
    postgres_url: str, redis_url: str, prefix: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    """An orchestrator with a worker and two API processes on one database and queue."""
    settings = scaleout_settings(
        postgres_url,
        redis_url,
        prefix,
        api_keys="op-key:operator",
        rate_limit_per_second=0,
        shutdown_grace=0,
    )
    async with (
        scaleout_engine(postgres_url, redis_url, prefix),
        api_process(settings) as one,
        api_process(settings) as other,
    ):
        yield one, other


async def submit(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/workflow", json=CHARGE, headers=OPERATOR)
    assert response.status_code == 201, response.text
    return str(response.json()["execution_id"])


async def trigger(
    client: httpx.AsyncClient, execution_id: str, amount: int, **headers: str
) -> httpx.Response:
    return await client.post(
        f"/v1/workflow/trigger/{execution_id}",
        json={"input_params": {"amount": amount}},
        headers={**OPERATOR, **headers},
    )


async def finished(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while True:
        response = await client.get(f"/v1/workflows/{execution_id}", headers=OPERATOR)
        body: dict[str, Any] = response.json()
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return body
        assert time.monotonic() < deadline, f"{execution_id} stayed {body['status']}"
        await asyncio.sleep(0.05)


def assert_ran_with(detail: dict[str, Any], amount: int) -> None:
    """The run used ``amount``, and the execution's stored inputs say so."""
    assert detail["status"] == "COMPLETED", detail
    assert detail["nodes"]["charge"]["output"] == f"charged {amount}"
    assert detail["inputs"] == {"amount": amount}


def assert_refused(response: httpx.Response) -> None:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_a_second_trigger_is_refused_and_changes_nothing(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    async with cluster(postgres_url, redis_server, redis_prefix) as (one, other):
        for second in (one, other):  # on the same API process, then on another
            execution_id = await submit(one)
            first = await trigger(one, execution_id, 5)
            assert first.status_code == 202, first.text
            assert_refused(await trigger(second, execution_id, 5000))
            assert_ran_with(await finished(one, execution_id), 5)
            # Once it ran, still 409, and still the inputs it ran with.
            assert_refused(await trigger(second, execution_id, 7))
            assert_ran_with(await finished(other, execution_id), 5)


async def test_of_triggers_racing_on_two_api_processes_one_wins(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    async with cluster(postgres_url, redis_server, redis_prefix) as (one, other):
        for _ in range(5):
            execution_id = await submit(one)
            answers = await asyncio.gather(
                trigger(one, execution_id, 5), trigger(other, execution_id, 5000)
            )
            codes = sorted(answer.status_code for answer in answers)
            assert codes == [202, 409], [answer.text for answer in answers]
            won = 5 if answers[0].status_code == 202 else 5000
            assert_ran_with(await finished(other, execution_id), won)


async def test_a_repeat_with_an_idempotency_key_answers_the_first_trigger(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    async with cluster(postgres_url, redis_server, redis_prefix) as (one, other):
        execution_id = await submit(one)
        first = await trigger(one, execution_id, 5, **{"Idempotency-Key": "pay-1"})
        assert first.status_code == 202, first.text
        again = await trigger(other, execution_id, 5000, **{"Idempotency-Key": "pay-1"})
        assert again.status_code == 202, again.text
        assert again.json()["message"] == "Workflow was already started"
        assert_ran_with(await finished(one, execution_id), 5)


async def test_an_unknown_node_is_invalid_content_in_scale_out_too(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    async with cluster(postgres_url, redis_server, redis_prefix) as (one, other):
        execution_id = await submit(one)
        body = {"input_params": {"amount": 5}, "node_overrides": {"nosuch": {"x": 1}}}
        answer = await one.post(f"/v1/workflow/trigger/{execution_id}", json=body, headers=OPERATOR)
        assert answer.status_code == 422, answer.text
        assert [e["code"] for e in answer.json()["errors"]] == ["unknown_node"]
        assert (await trigger(other, execution_id, 5)).status_code == 202  # still pending
        assert_ran_with(await finished(one, execution_id), 5)
        retry = f"/v1/workflows/{execution_id}/retry"
        answer = await other.post(retry, params={"from_node": "nosuch"}, headers=OPERATOR)
        assert answer.status_code == 422, answer.text
        assert answer.json()["errors"][0]["field"] == "from_node"


LISTENER = {
    "name": "on-thing",
    "triggers": [{"type": "event", "name": "thing", "event_type": "thing.happened"}],
    "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
}


async def test_an_event_delivered_twice_at_once_starts_one_execution_for_both(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    # The second delivery finds the execution the first made, already triggered: it answers
    # with that execution ("delivered before"), never with a refused trigger.
    async with cluster(postgres_url, redis_server, redis_prefix) as (one, other):
        listened = await one.post("/v1/workflow", json=LISTENER, headers=OPERATOR)
        assert listened.status_code == 201, listened.text
        for i in range(6):
            sent = {"id": f"evt-{i}"}
            answers = await asyncio.gather(
                *(
                    client.post("/v1/events/thing.happened", json=sent, headers=OPERATOR)
                    for client in ((one, other) if i % 2 else (one, one))
                )
            )
            assert [a.status_code for a in answers] == [202, 202], [a.text for a in answers]
            started = {e["execution_id"] for a in answers for e in a.json()["executions"]}
            assert len(started) == 1, [a.text for a in answers]
            await finished(other, started.pop())
