"""The Python API refuses the idempotency keys the engine keeps for itself, as the HTTP API
(422) and the CLI (exit 2) do; the engine's own starts (children, schedule ticks, events)
still use them."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_api import serving

from orchestrion import arun
from orchestrion.client import AsyncClient, InvalidRequest
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import ReservedIdempotencyKey

FLOW = {"name": "keyed", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
PARENT = {
    "name": "parent",
    "dag": {"nodes": [{"id": "sub", "handler": "workflow", "config": {"workflow": "keyed"}}]},
}
LISTENER = {
    "name": "listener",
    "triggers": [{"name": "on-ping", "type": "event", "event_type": "ping"}],
    "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
}
RESERVED = ["child:abc", "schedule:foo:1", "event:abc", "EVENT:x", "Schedule:nightly@1"]


@pytest.mark.parametrize("key", RESERVED)
async def test_the_engine_refuses_a_reserved_key_from_its_caller(tmp_path: Path, key: str) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'k.db'}") as engine:
        definition = await engine.submit(FLOW)
        starts = [
            engine.start_execution(FLOW, idempotency_key=key),
            engine.start_execution(definition, idempotency_key=key),
            engine.create_execution(definition.id, idempotency_key=key),
            engine.run(FLOW, idempotency_key=key, timeout=10),
        ]
        for start in starts:
            with pytest.raises(ReservedIdempotencyKey) as refused:
                await start
            message = str(refused.value)
            assert repr(key) in message
            assert "event:, schedule:, child:" in message
            assert isinstance(refused.value, ValueError)
        page, _ = await engine.list_executions()
        assert page == []  # nothing was created under the key
    with pytest.raises(ReservedIdempotencyKey):
        await arun(FLOW, database_url="memory://", idempotency_key=key)


async def test_the_engine_own_starts_keep_their_keys(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'k.db'}") as engine:
        await engine.submit(FLOW)
        await engine.submit(LISTENER)
        parent = await engine.run(PARENT, timeout=20)
        assert parent.status is ExecutionStatus.COMPLETED, parent
        emitted = await engine.emit("ping", {}, "e-1")
        [started] = emitted.executions
        result = await engine.wait(started.execution_id, timeout=20)
        assert result.status is ExecutionStatus.COMPLETED
        keys = {
            (await engine.store.get_execution(r.id)).idempotency_key or ""
            for r in (await engine.list_executions())[0]
        }
        assert any(k.startswith("child:") for k in keys), keys
        assert any(k.startswith("event:") for k in keys), keys
        # A caller's ordinary key is stored as given.
        plain = await engine.start_execution(FLOW, idempotency_key="order-17")
        assert (await engine.store.get_execution(plain.id)).idempotency_key == "order-17"


async def test_the_client_library_is_refused_a_reserved_key(tmp_path: Path) -> None:
    async with (
        serving(tmp_path) as running,
        AsyncClient("http://api", transport=running.client._transport) as client,
    ):
        submitted = await client.submit(FLOW)
        for call in (
            client.submit(FLOW, idempotency_key="child:abc"),
            client.trigger(submitted.execution_id, idempotency_key="schedule:foo:1"),
            client.run(FLOW, idempotency_key="event:abc", timeout=10),
        ):
            with pytest.raises(InvalidRequest) as refused:
                await call
            assert "the engine's own" in str(refused.value)


@pytest.mark.parametrize("key", [" event:1", "order-1 ", "a\nb", "tab\there", "clé"])
async def test_the_client_library_refuses_a_key_no_header_carries_as_given(
    tmp_path: Path, key: str
) -> None:
    # Sent, it would fail as a connection does, or reach the server other than it was given
    # (white space at either end is dropped): refused as invalid, nothing started.
    async with (
        serving(tmp_path) as running,
        AsyncClient("http://api", transport=running.client._transport) as client,
    ):
        with pytest.raises(InvalidRequest) as refused:
            await client.submit(FLOW, idempotency_key=key)
        assert refused.value.errors[0]["field"] == "Idempotency-Key"
        listed = await client.list_executions()
        assert listed.items == []
