"""Personal data where masking once missed it, masked for callers without admin: the keys of
JSON objects (the execution's inputs, node outputs, definitions' configs) and the free text
of classified definitions (descriptions, node names)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.settings import load_settings

ADMIN = {"Authorization": "Bearer adm-key"}
OPERATOR = {"Authorization": "Bearer op-key"}
VIEWER = {"Authorization": "Bearer view-key"}
CONTACTS = {"ada@example.com": "vip", "+44 20 7946 0958": "m", "123-45-6789": "ssn"}
CLEAR = ("ada@example.com", "7946 0958", "123-45-6789")
DEFINITION = {
    "name": "keyed-contacts",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "card",
                "handler": "noop",
                "dependencies": ["input"],
                "data_classification": "pii",
                "config": {"value": {"bob@example.com": "x"}},
            },
            {
                "id": "echo",
                "handler": "noop",
                "dependencies": ["input"],
                "data_classification": "public",
                "config": {"value": "{{ input.contacts }}", "table": {"eve@example.com": 1}},
            },
        ]
    },
}


@contextlib.asynccontextmanager
async def serving(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'keys.db'}",
        rate_limit_per_second=0,
        shutdown_grace=0,
        api_keys="adm-key:admin,op-key:operator,view-key:viewer",
    )
    engine = Engine(settings=settings)
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client
    finally:
        await engine.stop(0)


async def _run(client: httpx.AsyncClient) -> str:
    submitted = await client.post("/v1/workflow", json=DEFINITION, headers=OPERATOR)
    assert submitted.status_code == 201, submitted.text
    execution_id = str(submitted.json()["execution_id"])
    params = {"input_params": {"contacts": CONTACTS}}
    triggered = await client.post(
        f"/v1/workflow/trigger/{execution_id}", json=params, headers=OPERATOR
    )
    assert triggered.status_code == 202, triggered.text
    deadline = time.monotonic() + 20
    while True:
        body = (await client.get(f"/v1/workflows/{execution_id}", headers=ADMIN)).json()
        if body["status"] in ("COMPLETED", "FAILED"):
            assert body["status"] == "COMPLETED", body
            return execution_id
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.02)


def _clear(value: Any) -> list[str]:
    text = json.dumps(value)
    return [shown for shown in CLEAR if shown in text]


async def test_keys_that_hold_personal_data_are_masked_for_viewers(tmp_path: Path) -> None:
    async with serving(tmp_path) as client:
        execution_id = await _run(client)
        admin = (await client.get(f"/v1/workflows/{execution_id}", headers=ADMIN)).json()
        assert admin["inputs"] == {"contacts": CONTACTS}  # the admin sees what is stored
        for who in (VIEWER, OPERATOR):
            shown = (await client.get(f"/v1/workflows/{execution_id}", headers=who)).json()
            assert _clear(shown) == [], shown
            masked = {"[email]": "vip", "[phone]": "m", "[ssn]": "ssn"}
            assert shown["inputs"] == {"contacts": masked}
            nodes = shown["nodes"]
            assert nodes["input"]["output"] == {"contacts": masked}
            assert nodes["echo"]["output"] == masked
            results = await client.get(f"/v1/workflows/{execution_id}/results", headers=who)
            assert _clear(results.json()) == [], results.text
            inputs = await client.get(
                f"/v1/workflows/{execution_id}/nodes/echo/inputs", headers=who
            )
            assert _clear(inputs.json()) == [], inputs.text
            events = await client.get(f"/v1/workflows/{execution_id}/events", headers=who)
            assert _clear(events.json()) == [], events.text


async def test_definition_config_keys_are_masked_for_viewers(tmp_path: Path) -> None:
    async with serving(tmp_path) as client:
        submitted = await client.post("/v1/workflow", json=DEFINITION, headers=OPERATOR)
        assert submitted.status_code == 201, submitted.text
        shown = (await client.get("/v1/definitions/keyed-contacts", headers=VIEWER)).json()
        assert "bob@example.com" not in json.dumps(shown) and "eve@" not in json.dumps(shown)
        nodes = {node["id"]: node for node in shown["spec"]["dag"]["nodes"]}
        assert nodes["card"]["config"] == {"value": {"[email]": "[masked: pii]"}}
        assert nodes["echo"]["config"]["table"] == {"[email]": 1}
        admin = (await client.get("/v1/definitions/keyed-contacts", headers=ADMIN)).json()
        assert "eve@example.com" in json.dumps(admin)


async def test_descriptions_of_classified_definitions_are_masked(tmp_path: Path) -> None:
    described = {
        **DEFINITION,
        "name": "described",
        "description": "Calls ada@example.com when it fails",
        "success_criteria": [
            {"condition": "{{ true }}", "description": "escalate to +44 20 7946 0958"}
        ],
    }
    nodes = [dict(node) for node in DEFINITION["dag"]["nodes"]]  # type: ignore[index]
    nodes[1]["description"] = "the card of bob@example.com"
    nodes[2]["name"] = "Echo for 123-45-6789"
    described["dag"] = {"nodes": nodes}
    async with serving(tmp_path) as client:
        submitted = await client.post("/v1/workflow", json=described, headers=OPERATOR)
        assert submitted.status_code == 201, submitted.text
        path = "/v1/definitions/described?include_source=true"
        shown = (await client.get(path, headers=VIEWER)).json()
        assert _clear(shown) == [] and "bob@" not in json.dumps(shown), shown
        spec = shown["spec"]
        assert spec["description"] == "Calls [email] when it fails"
        assert spec["success_criteria"][0]["description"] == "escalate to [phone]"
        by_id = {node["id"]: node for node in spec["dag"]["nodes"]}
        assert by_id["card"]["description"] == "the card of [email]"
        assert by_id["echo"]["name"] == "Echo for [ssn]"
        assert shown["source"] == "[masked: pii]"
        admin = (await client.get(path, headers=ADMIN)).json()
        assert admin["spec"]["description"] == described["description"]
