"""Values a store cannot write, made inside a run, on a real SQLite file and PostgreSQL.

The API refuses a lone surrogate at the door, but a template or a function can make one.
It is kept as its escape wherever it lands (output, rendered config, error, log line); an
output JSON cannot hold fails its node with an ``output`` error. A commit the store still
refuses fails only the executions whose records it refused, never the others of the turn,
and one refused again and again is parked and reported instead of being retried for ever.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.events import NodeSucceeded
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.commit_faults import PARK_AFTER
from orchestrion.engine.facade import Engine
from orchestrion.handlers.python import function_registry
from orchestrion.settings import load_settings
from orchestrion.store.base import LogFilter

RELEASE = threading.Event()


def says(msg: str = "") -> dict[str, Any]:
    logging.getLogger("t.unstorable").warning("got %s", msg)
    return {"said": msg}


def fails(msg: str = "") -> None:
    raise ValueError(msg)


def not_a_number() -> dict[str, Any]:
    return {"ok": 1, "ratio": [1.0, float("nan")]}


def holds(msg: str = "") -> str:
    RELEASE.wait(30)
    return msg


@pytest.fixture
def functions() -> Iterator[None]:
    RELEASE.clear()
    named = {"t_says": says, "t_fails": fails, "t_nan": not_a_number, "t_holds": holds}
    for name, func in named.items():
        function_registry.register(name, func, replace=True)
    yield
    RELEASE.set()
    for name in named:
        function_registry.unregister(name)


@pytest.fixture(params=["sqlite", "postgres"])
async def engine(
    request: pytest.FixtureRequest, tmp_path: Path, functions: None
) -> AsyncIterator[Engine]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'o.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    settings = load_settings(database_url=url, capture_node_logs=True)
    async with Engine(settings=settings) as running:
        yield running


SURROGATE = {
    "name": "surrogate",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop", "config": {"value": "{{ '\\ud800' }} and end"}},
            {
                "id": "b",
                "handler": "python",
                "dependencies": ["a"],
                "config": {"function": "t_says", "params": {"msg": "{{ a.output }}"}},
            },
            {
                "id": "c",
                "handler": "python",
                "dependencies": ["a"],
                "config": {"function": "t_fails", "params": {"msg": "{{ a.output }}"}},
            },
        ]
    },
}

MANY = {
    "name": "many",
    "dag": {
        "nodes": [
            {"id": f"n{i}", "handler": "noop", "config": {"value": i}}
            | ({"dependencies": [f"n{i - 1}"]} if i else {})
            for i in range(30)
        ]
    },
}

ESCAPED = "\\ud800 and end"  # the six characters of the escape, then the rest


async def test_a_template_made_surrogate_is_kept_escaped_and_harms_no_other_run(
    engine: Engine,
) -> None:
    surrogate = await engine.submit(SURROGATE)
    many = await engine.submit(MANY)
    started = [await engine.start_execution(surrogate)]
    started += [await engine.start_execution(many) for _ in range(4)]
    results = await asyncio.gather(*(engine.wait(r.id, timeout=30) for r in started))
    for result in results[1:]:
        assert result.status is ExecutionStatus.COMPLETED, result.error
    poisoned = results[0]
    assert poisoned.status is ExecutionStatus.FAILED  # c failed, as its function says
    assert poisoned.nodes["a"].output == ESCAPED
    assert poisoned.nodes["b"].output == {"said": ESCAPED}
    error = poisoned.nodes["c"].error
    assert error is not None and error["message"] == f"ValueError: {ESCAPED}"
    # What is stored reads back the same, from the store itself.
    stored = await engine.result(started[0].id)
    assert stored.nodes["b"].output == {"said": ESCAPED}
    logs = await engine.store.list_node_logs(LogFilter(started[0].id, "b"))
    assert any(ESCAPED in line.message for line in logs)
    assert engine.commit_faults.total == 0
    assert not engine.commit_faults.parked


NUL = {
    "name": "nul",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {
                "id": "says",
                "handler": "python",
                "dependencies": ["input"],
                "config": {"function": "t_says", "params": {"msg": "NUL {{ '\\x00' }} end"}},
            },
            {
                "id": "fails",
                "handler": "python",
                "dependencies": ["input"],
                "config": {"function": "t_fails", "params": {"msg": "{{ input.x }}"}},
            },
        ]
    },
}


async def test_a_nul_in_a_log_line_or_an_error_is_kept_escaped(engine: Engine) -> None:
    # PostgreSQL's text cannot hold a NUL: from a template or from the start's inputs, it
    # must neither stop the run nor loop on a refused commit.
    result = await engine.run(NUL, {"x": "a\x00b"}, timeout=30)
    assert result.status is ExecutionStatus.FAILED  # "fails" fails, as its function says
    assert result.nodes["says"].state is NodeState.COMPLETED
    error = result.nodes["fails"].error
    assert error is not None and error["message"] == "ValueError: a\\x00b"
    logs = await engine.store.list_node_logs(LogFilter(result.execution_id, "says"))
    assert any("NUL \\x00 end" in line.message for line in logs), logs
    assert engine.commit_faults.total == 0


async def test_an_output_json_cannot_hold_fails_its_node_naming_where(engine: Engine) -> None:
    flow = {
        "name": "nan",
        "dag": {"nodes": [{"id": "x", "handler": "python", "config": {"function": "t_nan"}}]},
    }
    result = await engine.run(flow, timeout=30)
    assert result.status is ExecutionStatus.FAILED
    error = result.nodes["x"].error
    assert error is not None
    assert error["category"] == "output"
    assert "node 'x'" in error["message"]
    assert "/ratio/1" in error["message"], error["message"]


async def _running(engine: Engine, execution_id: str, node: str) -> int:
    """The attempt of ``node`` once it runs (in this engine's machine)."""
    for _ in range(500):
        machine = engine.live_machine(execution_id)
        if machine is not None:
            run = machine.nodes[machine.plan.index[node]]
            if run.state is NodeState.RUNNING:
                return run.attempt
        await asyncio.sleep(0.02)
    raise AssertionError(f"{node} of {execution_id} never ran")


HOLDS = {
    "name": "holds",
    "dag": {
        "nodes": [
            {
                "id": "h",
                "handler": "python",
                "config": {"function": "t_holds", "params": {"msg": "fine"}},
            }
        ]
    },
}


async def test_a_refused_record_fails_its_execution_alone_and_is_parked_not_retried(
    engine: Engine,
) -> None:
    # A worker that answers with text no encoder takes (a scale-out worker's event comes
    # from the wire): posted in the same turn as another execution's good result.
    definition = await engine.submit(HOLDS)
    bad = await engine.start_execution(definition)
    good = await engine.start_execution(definition)
    for turn in range(PARK_AFTER):
        bad_attempt = await _running(engine, bad.id, "h")
        if turn == 0:  # the same turn as the bad one; the good one then completes
            good_attempt = await _running(engine, good.id, "h")
            engine._loop.post(good.id, NodeSucceeded("h", good_attempt, time.time(), "ok"))
        engine._loop.post(bad.id, NodeSucceeded("h", bad_attempt, time.time(), "\udc80"))
        await engine._loop.drain()
        await asyncio.sleep(0)
    done = await engine.wait(good.id, timeout=10)
    assert done.status is ExecutionStatus.COMPLETED
    assert done.nodes["h"].output == "ok"
    faults = engine.commit_faults
    assert faults.total == PARK_AFTER
    assert list(faults.parked) == [bad.id]
    assert "cannot be stored" in faults.parked[bad.id] or "refused" in faults.parked[bad.id]
    await asyncio.sleep(1.5)  # a reload would come after 1 s: none comes
    assert engine.live_machine(bad.id) is None
    assert faults.total == PARK_AFTER
    assert (await engine.store.get_execution(bad.id)).status is ExecutionStatus.RUNNING
    RELEASE.set()


async def test_an_approval_message_a_template_made_is_kept_escaped(engine: Engine) -> None:
    flow = {
        "name": "ask",
        "dag": {
            "nodes": [
                {"id": "ask", "handler": "approval", "config": {"message": "ok {{ '\\ud800' }}?"}},
                {"id": "after", "handler": "noop", "dependencies": ["ask"], "config": {"value": 1}},
            ]
        },
    }
    record = await engine.start_execution(await engine.submit(flow))
    for _ in range(500):
        if (await engine.store.get_execution(record.id)).status is ExecutionStatus.WAITING:
            break
        await asyncio.sleep(0.02)
    events = await engine.store.list_events(record.id, types=["node.waiting", "node.started"])
    texts = [text for event in events for text in _strings(event.data)]
    assert texts.count("ok \\ud800?") == 2, texts  # the rendered input, the waiting data
    assert not any("\ud800" in text for text in texts)
    await engine.decide(record.id, "ask", approved=True, by="ops")
    result = await engine.wait(record.id, timeout=10)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert engine.commit_faults.total == 0


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []
