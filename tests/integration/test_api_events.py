"""POST /v1/events/{event_type} in-process: what an event answers, redelivery, refusals, roles,
the audit record, and the Python clients against the same app."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api import serving
from test_api_audit import OPERATOR, VIEWER, audit_page, auth
from test_api_audit import serving as audited_serving

from audit_helpers import audited
from orchestrion.client import AsyncClient
from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import InvalidTransition

PROBLEM = "application/problem+json"
LISTENER = {
    "name": "on-policy",
    "inputs": {"severity": {"type": "string"}, "doc": {"type": "string"}},
    "triggers": [
        {
            "type": "event",
            "name": "policy_update",
            "event_type": "policy.updated",
            "filter": "payload.severity == 'high'",
        }
    ],
    "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
}


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with serving(tmp_path) as running:
        response = await running.client.post("/v1/workflow", json=LISTENER)
        assert response.status_code == 201, response.text
        yield running.client


async def until_final(client: httpx.AsyncClient, execution_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while True:
        body: dict[str, Any] = (await client.get(f"/v1/workflows/{execution_id}")).json()
        if body["status"] in ("COMPLETED", "FAILED", "CANCELLED"):
            return body
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)


async def test_an_event_answers_202_with_what_it_started_and_once_per_id(
    api: httpx.AsyncClient,
) -> None:
    payload = {"id": "evt-1", "severity": "high", "doc": "ict.pdf"}
    first = await api.post("/v1/events/policy.updated", json=payload)
    assert first.status_code == 202, first.text
    body = first.json()
    assert body["event_id"] == "evt-1" and body["event_type"] == "policy.updated"
    [started] = body["executions"]
    assert started["workflow"] == "on-policy" and started["trigger"] == "policy_update"
    assert body["skipped"] == [] and body["message"] == "the event started 1 execution(s)"
    detail = await until_final(api, started["execution_id"])
    assert detail["status"] == "COMPLETED"
    assert detail["inputs"] == {"severity": "high", "doc": "ict.pdf"}  # the id is not input
    assert detail["correlation_id"] == "evt-1"
    again = await api.post("/v1/events/policy.updated", json=payload)
    assert again.status_code == 202
    assert [e["execution_id"] for e in again.json()["executions"]] == [started["execution_id"]]
    message = again.json()["message"]
    assert message == "this event was delivered before: it started 1 execution(s) then"
    listed = (await api.get("/v1/workflows", params={"workflow": "on-policy"})).json()
    started_ones = [i for i in listed["items"] if i["status"] != "PENDING"]
    assert len(started_ones) == 1


async def test_an_event_delivered_again_is_told_apart_by_its_key_not_the_clock(
    api: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    payload = {"id": "evt-clock", "severity": "high", "doc": "a.pdf"}
    first = await api.post("/v1/events/policy.updated", json=payload)
    assert first.json()["message"] == "the event started 1 execution(s)"
    await until_final(api, first.json()["executions"][0]["execution_id"])
    # The clock steps back an hour (NTP, a replica whose clock lags the one that started it).
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() - 3600)
    again = await api.post("/v1/events/policy.updated", json=payload)
    monkeypatch.setattr(time, "time", real)
    assert again.status_code == 202, again.text
    message = again.json()["message"]
    assert message == "this event was delivered before: it started 1 execution(s) then"


async def test_the_idempotency_key_header_names_the_event_when_the_body_does_not(
    api: httpx.AsyncClient,
) -> None:
    headers = {"Idempotency-Key": "hdr-9"}
    one = await api.post("/v1/events/policy.updated", json={"severity": "high"}, headers=headers)
    two = await api.post("/v1/events/policy.updated", json={"severity": "high"}, headers=headers)
    assert one.json()["event_id"] == "hdr-9"
    ids = [e["execution_id"] for e in one.json()["executions"]]
    assert ids and ids == [e["execution_id"] for e in two.json()["executions"]]


async def test_filtered_unknown_and_empty_events_are_accepted_with_an_empty_list(
    api: httpx.AsyncClient,
) -> None:
    low = await api.post("/v1/events/policy.updated", json={"severity": "low"})
    assert low.status_code == 202
    assert low.json()["executions"] == []
    assert [s["reason"] for s in low.json()["skipped"]] == ["filter"]
    unknown = await api.post("/v1/events/nobody.listens")
    assert unknown.status_code == 202
    body = unknown.json()
    assert body["executions"] == [] and body["skipped"] == []
    assert body["message"] == "no active workflow listens to 'nobody.listens' events"
    assert body["event_id"]  # generated


@pytest.mark.parametrize(
    ("path", "body", "detail"),
    [
        ("/v1/events/workflow.completed", {}, "fired by the engine only"),
        ("/v1/events/policy.updated", {"id": 7}, None),
        ("/v1/events/policy.updated", {"id": "bad id"}, None),
        ("/v1/events/has%20space", {}, None),
    ],
)
async def test_bad_events_are_problem_documents(
    api: httpx.AsyncClient, path: str, body: dict[str, Any], detail: str | None
) -> None:
    response = await api.post(path, json=body)
    assert response.status_code in (400, 422), response.text  # no 403: no key is at fault
    assert response.headers["content-type"].startswith(PROBLEM)
    if detail is not None:
        assert detail in response.json()["detail"]


async def test_a_body_that_is_not_a_json_object_is_refused(api: httpx.AsyncClient) -> None:
    listed = await api.post("/v1/events/policy.updated", json=[1, 2])
    assert listed.status_code in (400, 422)
    text = await api.post(
        "/v1/events/policy.updated", content=b"x", headers={"Content-Type": "text/plain"}
    )
    assert text.status_code == 415


async def test_events_need_the_operator_role_and_are_audited(tmp_path: Path) -> None:
    async with audited_serving(tmp_path, audited()) as (client, _engine):
        anonymous = await client.post("/v1/events/policy.updated", json={})
        assert anonymous.status_code == 401
        denied = await client.post("/v1/events/policy.updated", json={}, headers=auth(VIEWER))
        assert denied.status_code == 403
        sent = await client.post(
            "/v1/events/policy.updated",
            json={"id": "audited-1"},
            headers=auth(OPERATOR, **{"X-Client-ID": "feed"}),
        )
        assert sent.status_code == 202
        trail = await audit_page(client, action="api.emit_event")
        [record] = [r for r in trail["records"] if r["outcome"] == "202"]
        assert record["details"]["target"] == {"event_type": "policy.updated"}
        assert record["details"]["created"] == {"event_id": "audited-1"}
        assert record["details"]["client_id"] == "feed"


async def test_the_async_client_emits(api: httpx.AsyncClient) -> None:
    async with AsyncClient("http://api", transport=api._transport) as client:
        answer = await client.emit("policy.updated", {"severity": "high"}, event_id="c-1")
        assert answer.event_id == "c-1"
        [started] = answer.executions
        assert started.workflow == "on-policy" and isinstance(started.status, ExecutionStatus)
        again = await client.emit("policy.updated", {"severity": "high"}, event_id="c-1")
        assert again.executions[0].execution_id == started.execution_id
        skipped = await client.emit("policy.updated", {"severity": "low"})
        assert skipped.executions == () and skipped.skipped[0].reason == "filter"


SPY = {"name": "spy", "dag": {"nodes": [{"id": "keep", "handler": "noop"}]}}


@pytest.mark.parametrize(
    "key",
    [
        "event:0123:policy.updated:evt-9:on-policy",
        "EVENT:evt-9:on-policy",
        "schedule:on-policy:nightly@1796000000.000",
        "child:0f7d:node:1",
    ],
)
async def test_a_caller_cannot_take_an_idempotency_key_of_the_engine(
    api: httpx.AsyncClient, key: str
) -> None:
    header = {"Idempotency-Key": key}
    sent = [
        api.post("/v1/workflow", json=SPY, headers=header),
        api.post("/workflow", json=SPY, headers=header),
        api.post("/api/v1/workflow", json=SPY, headers=header),
        api.post("/v1/definitions/on-policy/executions", json={}, headers=header),
        api.post("/workflows/start", json={"definition": SPY}, headers=header),
        api.post("/workflows/start", json={"definition": SPY, "idempotency_key": key}),
    ]
    for answer in await asyncio.gather(*sent):
        assert answer.status_code == 422, answer.text
        assert answer.headers["content-type"].startswith(PROBLEM)
        assert "the engine's own" in answer.text
    listed = (await api.get("/v1/workflows", params={"workflow": "spy"})).json()
    assert listed["items"] == []  # nothing was stored under the key


async def test_an_event_never_starts_an_execution_made_under_its_key_for_another_workflow(
    tmp_path: Path,
) -> None:
    from orchestrion.core.idempotency import event_key
    from orchestrion.engine.facade import Engine

    async with Engine(f"sqlite:///{tmp_path / 'e.db'}") as engine:
        listener = await engine.submit(LISTENER)
        spy = await engine.submit(SPY)
        # What a caller's key could have made, had the API let it through.
        key = event_key("policy.updated", "evt-9", "on-policy")
        await engine.create_execution(spy.id, idempotency_key=key)
        emitted = await engine.emit("policy.updated", {"severity": "high"}, "evt-9")
        assert emitted.executions == []
        [skip] = emitted.skipped
        assert skip.workflow == "on-policy" and "of workflow 'spy'" in skip.message
        # The same id sent as another type is another event: a workflow listening to both
        # types starts once for each (keys include the type).
        both = {"type": "event", "event_type": "order.placed"}
        await engine.submit({**LISTENER, "triggers": [*LISTENER["triggers"], both]})
        first = await engine.emit("policy.updated", {"severity": "high"}, "evt-10")
        second = await engine.emit("order.placed", {"severity": "high"}, "evt-10")
        [one], [two] = first.executions, second.executions
        assert one.execution_id != two.execution_id and listener.id != spy.id


async def test_an_event_id_sent_again_with_another_payload_is_a_conflict_starting_nothing(
    tmp_path: Path,
) -> None:
    async with serving(tmp_path) as running:
        api = running.client
        for i in range(30):
            trigger = {"type": "event", "event_type": "many.go", "filter": f"payload.x > {i % 3}"}
            flow = {"name": f"many-{i}", "triggers": [trigger]}
            flow["dag"] = {"nodes": [{"id": "a", "handler": "noop"}]}
            assert (await api.post("/v1/workflow", json=flow)).status_code == 201
        first = await api.post("/v1/events/many.go", json={"id": "m1", "x": 1})
        assert first.status_code == 202 and len(first.json()["executions"]) == 10
        other = await api.post("/v1/events/many.go", json={"id": "m1", "x": 5})
        assert other.status_code == 409, other.text
        assert other.headers["content-type"] == PROBLEM
        assert "'m1'" in other.json()["detail"] and "another payload" in other.json()["detail"]
        same = await api.post("/v1/events/many.go", json={"id": "m1", "x": 1})
        assert same.status_code == 202 and len(same.json()["executions"]) == 10
        assert all(not e.get("new", False) for e in same.json()["executions"])
        listed = (await api.get("/v1/workflows", params={"limit": 100})).json()
        assert len([i for i in listed["items"] if i["status"] != "PENDING"]) == 10
        async with AsyncClient("http://api", transport=api._transport) as client:
            with pytest.raises(InvalidTransition, match="another payload"):
                await client.emit("many.go", {"x": 2}, event_id="m1")
