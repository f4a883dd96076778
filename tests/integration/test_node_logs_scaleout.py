"""Node logs in scale-out mode: attempts run by workers reading Redis Streams, their lines sent
to the orchestrator while they run and with their outcome, stored in PostgreSQL, and sealed
on the wire and at rest for classified executions."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.governance.encryption import KeyRing
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.store.base import LogFilter
from scaleout import scaleout_engine
from sealed_values import monitored, pg_dump

log = logging.getLogger("tests.node_logs_scaleout")
SECRET = "Grace-Hopper-LOG-7731"


@pytest.fixture(autouse=True)
def _capture_node_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    # Embedded engines keep node log lines only when asked (a process-wide factory).
    monkeypatch.setenv("ORCHESTRION_CAPTURE_NODE_LOGS", "true")


@pytest.fixture(autouse=True)
def _info_records() -> Iterator[None]:
    previous = log.level
    log.setLevel(logging.INFO)
    yield
    log.setLevel(previous)


@function("t_so_logs", replace=True)
async def t_so_logs(ctx: NodeContext, lines: int = 3, pause: float = 0.0) -> int:
    for i in range(lines):
        log.info("%s line %d of attempt %d", ctx.node_id, i, ctx.attempt)
        await asyncio.sleep(pause)
    if ctx.node_id == "flaky" and ctx.attempt == 1:
        raise ConnectionError("the first attempt fails")
    return lines


@function("t_so_secret", replace=True)
def t_so_secret(ctx: NodeContext, name: str) -> str:
    log.warning("looked up %s", name)
    return "ok"


def node(node_id: str, **params: Any) -> dict[str, Any]:
    return {
        "id": node_id,
        "handler": "python",
        "retry": {"max_attempts": 2, "initial_delay": 0.01, "retry_on": ["all"]},
        "config": {"function": "t_so_logs", "params": params},
    }


async def test_workers_send_each_attempts_lines_with_its_outcome(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    flow = {
        "name": "so-logs",
        "dag": {"nodes": [node(f"n{i}") for i in range(6)] + [node("flaky", lines=2)]},
    }
    async with scaleout_engine(postgres_url, redis_server, redis_prefix, workers=2) as engine:
        result = await engine.run(flow, {}, timeout=30)
        assert result.status is ExecutionStatus.COMPLETED, result.error
        # Read at once: the last lines travelled in the outcome's transaction.
        lines = await engine.reads.node_logs(LogFilter(result.execution_id, limit=1000))
    got: dict[tuple[str, int], list[str]] = {}
    for line in lines:
        got.setdefault((line.node_id, line.attempt), []).append(line.message)
    for i in range(6):
        assert got[(f"n{i}", 1)] == [f"n{i} line {j} of attempt 1" for j in range(3)]
    assert got[("flaky", 1)] == ["flaky line 0 of attempt 1", "flaky line 1 of attempt 1"]
    assert got[("flaky", 2)] == ["flaky line 0 of attempt 2", "flaky line 1 of attempt 2"]


async def test_a_running_attempts_lines_cross_redis_before_it_ends(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    flow = {"name": "so-slow", "dag": {"nodes": [node("slow", lines=4, pause=0.4)]}}
    async with scaleout_engine(postgres_url, redis_server, redis_prefix) as engine:
        record = await engine.start_execution(await engine.submit(flow))
        deadline = time.monotonic() + 20
        while not (lines := await engine.reads.node_logs(LogFilter(record.id))):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
        assert (await engine.reads.execution(record.id)).status is ExecutionStatus.RUNNING
        assert lines[0].message == "slow line 0 of attempt 1"
        assert (await engine.wait(record.id, timeout=30)).ok
        every = await engine.reads.node_logs(LogFilter(record.id))
        assert [line.message for line in every] == [f"slow line {i} of attempt 1" for i in range(4)]


async def test_a_classified_attempts_lines_are_sealed_on_redis_and_at_rest(
    postgres_url: str, redis_server: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRION_ENCRYPTION_KEYS", f"k1:{KeyRing.generate_key()}")
    flow = {
        "name": "so-sealed",
        "dag": {
            "nodes": [
                {
                    "id": "lookup",
                    "handler": "python",
                    "data_classification": "pii",
                    "config": {"function": "t_so_secret", "params": {"name": "{{ input.name }}"}},
                }
            ]
        },
    }
    async with (
        monitored(redis_server) as wire,
        scaleout_engine(postgres_url, redis_server, redis_prefix) as engine,
    ):
        result = await engine.run(flow, {"name": SECRET}, timeout=30)
        assert result.ok, result.error
        lines = await engine.reads.node_logs(LogFilter(result.execution_id))
        assert [line.message for line in lines] == [f"looked up {SECRET}"]
        # The attempt's rendered config crossed sealed too, and reads back in the clear.
        [started] = await engine.store.list_events(result.execution_id, types=["node.started"])
        assert (started.data or {}).get("inputs") == {
            "function": "t_so_secret",
            "params": {"name": SECRET},
        }
    traffic = "\n".join(wire)
    assert "NodeLogged" in traffic
    assert SECRET not in traffic
    stored = await pg_dump(postgres_url)
    assert "node_logs" in stored
    assert SECRET not in stored
