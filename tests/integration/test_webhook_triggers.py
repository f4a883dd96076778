"""Webhook triggers through the engine, embedded (memory, SQLite) and in scale-out mode
(PostgreSQL + Redis): the active version's trigger is found by name, a delivery starts its
workflow once however often it comes, the filter and inputs see the payload and the headers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import DefinitionError
from scaleout import engine_for, scaleout_settings


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hooks.db'}"
    return "memory://" if request.param == "memory" else "scaleout"


@pytest.fixture
async def engine(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    async with engine_for(database_url, request) as engine:
        yield engine


def hooked(version: str, **trigger: Any) -> dict[str, Any]:
    return {
        "name": "deploy",
        "version": version,
        "inputs": {"ref": {"type": "string"}},
        "triggers": [{"type": "webhook", "name": "push", "secret": "GIT", **trigger}],
        "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
    }


async def test_a_delivery_starts_the_active_version_once(engine: Engine) -> None:
    await engine.submit(hooked("1"))
    await engine.submit(
        hooked(
            "2",
            filter="event.headers['x-event'] == 'push'",
            inputs={"ref": "{{ payload.ref }}"},
        )
    )
    found = await engine.webhook_trigger("deploy", "push")
    assert found is not None
    definition, trigger = found
    assert definition.version == "2" and trigger.scheme == "orchestrion"
    assert await engine.webhook_trigger("deploy", "other") is None
    assert await engine.webhook_trigger("nobody", "push") is None
    payload = {"ref": "main", "extra": 1}
    first = await engine.receive_webhook(definition, trigger, payload, "d1", {"x-event": "push"})
    [started] = first.executions
    again = await engine.receive_webhook(definition, trigger, payload, "d1", {"x-event": "push"})
    assert [e.execution_id for e in again.executions] == [started.execution_id]
    skipped = await engine.receive_webhook(definition, trigger, payload, "d2", {"x-event": "tag"})
    assert skipped.executions == [] and skipped.skipped[0].reason == "filter"
    result = await engine.wait(started.execution_id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED
    record = await engine.reads.execution(started.execution_id)
    assert record.inputs == {"ref": "main"}
    assert record.correlation_id == "push:d1"


async def test_a_malformed_webhook_trigger_is_refused_at_submission(engine: Engine) -> None:
    with pytest.raises(DefinitionError, match=r"triggers\[0\]\.secret"):
        await engine.submit(hooked("1", secret="not a name"))


async def test_the_scale_out_api_hands_a_delivery_to_the_orchestrators(
    request: pytest.FixtureRequest, postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        engine_for("scaleout", request),
        Engine(settings=settings, drive=False) as api,
    ):
        await api.submit(hooked("1", inputs={"ref": "{{ payload.ref }}"}))
        found = await api.webhook_trigger("deploy", "push")
        assert found is not None
        first = await api.receive_webhook(*found, {"ref": "v2"}, "d9")
        [started] = first.executions
        result = await api.wait(started.execution_id, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED
        again = await api.receive_webhook(*found, {"ref": "v2"}, "d9")
        assert [e.execution_id for e in again.executions] == [started.execution_id]
