"""The same definition submitted again and again through the API: checked once and kept, yet
answered exactly as the first time, and checked anew once what it was checked under moves."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.registry import default_registry
from orchestrion.settings import load_settings

SCHEDULED: dict[str, Any] = {
    "name": "repeated",
    "triggers": [{"type": "schedule", "cron": "0 * * * *"}],
    "dag": {"nodes": [{"id": "a", "handler": "probe", "config": {"size": 3}}]},
}


class Loose(BaseModel):
    size: int


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")
    size: str  # the definition's 3 is no longer valid


async def _probe(ctx: NodeContext) -> dict[str, Any]:
    return {}


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[httpx.AsyncClient, Engine]]:
    settings = load_settings(
        database_url=f"sqlite:///{tmp_path / 'api.db'}", rate_limit_per_second=0
    )
    engine = Engine(settings=settings, registry=default_registry().copy())
    engine.registry.register(HandlerSpec(name="probe", run=_probe, config_model=Loose))
    await engine.start()
    app = create_app(engine, settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                yield client, engine
    finally:
        await engine.stop(0)


async def test_a_definition_submitted_again_gets_the_same_answer_and_a_new_execution(
    served: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, _ = served
    answers = [(await client.post("/v1/workflow", json=SCHEDULED)).json() for _ in range(3)]
    assert len({a["execution_id"] for a in answers}) == 3
    first = answers[0]
    for again in answers[1:]:
        assert again["workflow_definition_id"] == first["workflow_definition_id"]
        assert (again["version"], again["warnings"]) == (first["version"], first["warnings"])
    assert first["warnings"]  # schedule triggers are stored, with a warning each time


async def test_a_definition_is_checked_again_once_its_handler_changed(
    served: tuple[httpx.AsyncClient, Engine],
) -> None:
    client, engine = served
    assert (await client.post("/v1/workflow", json=SCHEDULED)).status_code == 201
    engine.registry.register(
        HandlerSpec(name="probe", run=_probe, config_model=Strict), replace=True
    )
    refused = await client.post("/v1/workflow", json=SCHEDULED)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "config.size"
