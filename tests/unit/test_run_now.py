"""``NodeExecutor.run_now``: attempts whose handler has nothing to wait for run in the caller.

What it reports must be what ``execute`` would report for the same attempt; when it declines
(no ``run_now``, ``LATER``, an unknown handler) it reports nothing at all, so that the attempt
can start afresh in a task.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from dataclasses import replace
from typing import Any

import pytest

from orchestrion.core.events import (
    Event,
    NodeFailed,
    NodeSkipped,
    NodeStarted,
    NodeSucceeded,
    NodeWaiting,
)
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import PermanentNodeError
from orchestrion.execution.executor import NodeExecutor
from orchestrion.handlers.base import Controls, HandlerSpec, NodeContext, Resources
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry
from orchestrion.logcontext import node_fields
from orchestrion.templates.rendering import TemplateLimits


def _task(handler: str, config: dict[str, Any], **extra: Any) -> TaskMessage:
    return TaskMessage(
        "e1", "n1", 1, handler, config, {}, extra.pop("outputs", {}), idempotency_key="k", **extra
    )


def _executor(*specs: HandlerSpec) -> NodeExecutor:
    registry = HandlerRegistry()
    for spec in (*builtin_specs(), *specs):
        registry.register(spec)
    return NodeExecutor(registry, Resources(Controls.unrestricted()))


def _now(executor: NodeExecutor, task: TaskMessage) -> tuple[bool, list[Event]]:
    events: list[Event] = []
    ran = executor.run_now(task, lambda _execution, event: events.append(event))
    return ran, events


async def _execute(executor: NodeExecutor, task: TaskMessage) -> list[Event]:
    events: list[Event] = []
    await executor.execute(task, lambda _execution, event: events.append(event))
    return events


@pytest.mark.parametrize(
    ("task", "outcome"),
    [
        pytest.param(
            _task("noop", {"value": "{{ up.output.x }}"}, outputs={"up": {"x": 7}}),
            NodeSucceeded,
            id="noop-rendered",
        ),
        pytest.param(_task("noop", {"value": 1}, when="1 > 2"), NodeSkipped, id="condition-false"),
        pytest.param(_task("noop", {"sleep": -1}), NodeFailed, id="invalid-config"),
        pytest.param(_task("noop", {"value": "{{ nope.output }}"}), NodeFailed, id="bad-template"),
        pytest.param(_task("approval", {"message": "ok?"}), NodeWaiting, id="approval-waits"),
        pytest.param(
            _task("condition", {"cases": [{"when": "true", "then": ["a"]}]}),
            NodeSucceeded,
            id="condition",
        ),
        pytest.param(_task("input", {"required": ["who"]}), NodeFailed, id="missing-input"),
    ],
)
async def test_run_now_reports_what_execute_reports(task: TaskMessage, outcome: type) -> None:
    executor = _executor()
    ran, events = _now(executor, task)
    assert ran
    assert [type(e) for e in events] == [NodeStarted, outcome]
    expected = await _execute(executor, task)
    assert [type(e) for e in expected] == [NodeStarted, outcome]
    # Same outcome, field by field, but for the clock.
    assert {k: v for k, v in vars_of(events[1]).items() if k != "at"} == {
        k: v for k, v in vars_of(expected[1]).items() if k != "at"
    }


def vars_of(event: Event) -> dict[str, Any]:
    return {name: getattr(event, name) for name in event.__dataclass_fields__}


def test_run_now_hands_back_a_noop_that_must_sleep_untouched() -> None:
    ran, events = _now(_executor(), _task("noop", {"value": 1, "sleep": 0.01}))
    assert not ran
    assert events == []


def test_run_now_declines_handlers_without_it_and_unknown_ones() -> None:
    async def run(_ctx: NodeContext, _config: Any) -> Any:
        return 1

    executor = _executor(HandlerSpec(name="plain", run=run))
    assert _now(executor, _task("plain", {})) == (False, [])
    assert _now(executor, _task("no-such-handler", {})) == (False, [])


def test_run_now_declines_compensations() -> None:
    ran, events = _now(_executor(), _task("noop", {}, kind="compensate"))
    assert (ran, events) == (False, [])


def test_a_handler_raising_in_run_now_fails_the_attempt_with_its_category() -> None:
    def now(_ctx: NodeContext, _config: Any) -> Any:
        raise PermanentNodeError("no such customer", category="lookup")

    async def run(_ctx: NodeContext, _config: Any) -> Any:  # pragma: no cover - not reached
        raise AssertionError("run_now answered")

    ran, events = _now(
        _executor(HandlerSpec(name="lookup", run=run, run_now=now)), _task("lookup", {})
    )
    assert ran
    failed = events[1]
    assert isinstance(failed, NodeFailed)
    assert (failed.error.category, failed.error.message) == ("lookup", "no such customer")
    assert not failed.error.transient


def test_an_unserialisable_output_fails_the_attempt() -> None:
    def now(_ctx: NodeContext, _config: Any) -> Any:
        return {"when": object()}

    async def run(_ctx: NodeContext, _config: Any) -> Any:  # pragma: no cover - not reached
        return None

    ran, events = _now(_executor(HandlerSpec(name="odd", run=run, run_now=now)), _task("odd", {}))
    assert ran
    assert isinstance(events[1], NodeFailed)
    assert events[1].error.category == "output"


def test_run_now_sets_the_log_context_for_the_call_and_restores_the_callers() -> None:
    seen: list[Any] = []

    def now(_ctx: NodeContext, _config: Any) -> Any:
        seen.append(dict(node_fields.get() or {}))
        return "done"

    async def run(_ctx: NodeContext, _config: Any) -> Any:  # pragma: no cover - not reached
        return None

    executor = _executor(HandlerSpec(name="logs", run=run, run_now=now))
    token = node_fields.set({"execution_id": "the-engine's"})
    try:
        assert _now(executor, _task("logs", {}, correlation_id="c-9"))[0]
        assert node_fields.get() == {"execution_id": "the-engine's"}
        assert seen[0] == {
            "execution_id": "e1",
            "node_id": "n1",
            "attempt": 1,
            "correlation_id": "c-9",
        }
    finally:
        node_fields.reset(token)


MACRO = "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}"


def _where_spec(seen: list[dict[str, Any]]) -> HandlerSpec:
    """A handler with ``run_now`` that notes the thread it runs in and the log context."""

    def where_now(ctx: NodeContext, config: Any) -> Any:
        seen.append(
            {
                "thread": threading.current_thread().name,
                "fields": dict(node_fields.get() or {}),
                "config": config,
            }
        )
        return config

    async def where(ctx: NodeContext, config: Any) -> Any:
        return where_now(ctx, config)

    return HandlerSpec(name="where", run=where, run_now=where_now)


@pytest.mark.parametrize(
    "task",
    [
        pytest.param(_task("noop", {"value": MACRO}), id="config"),
        pytest.param(_task("noop", {"value": {"deep": ["{{ 'x' | upper }}"]}}), id="nested"),
        pytest.param(_task("noop", {"value": 1}, when="input.x | length > 1"), id="when"),
        pytest.param(_task("output", {"value": "{{ range(3) | list }}"}), id="output"),
        pytest.param(
            _task("condition", {"cases": [{"when": "range(3) | list", "then": ["a"]}]}),
            id="condition-case",
        ),
    ],
)
def test_run_now_declines_attempts_with_heavy_templates(task: TaskMessage) -> None:
    ran, events = _now(_executor(), task)
    assert not ran
    assert events == []


async def test_a_heavy_attempt_renders_in_a_render_thread_with_its_context() -> None:
    seen: list[dict[str, Any]] = []
    executor = _executor(_where_spec(seen))
    task = _task("where", {"v": "{{ up.output.x | string }}"}, outputs={"up": {"x": 7}})
    assert _now(executor, task) == (False, [])
    events = await _execute(executor, task)
    assert isinstance(events[-1], NodeSucceeded)
    assert events[-1].output == {"v": "7"}
    assert seen[0]["thread"].startswith("orchestrion-render")
    assert seen[0]["fields"]["node_id"] == "n1"
    assert seen[0]["fields"]["execution_id"] == "e1"


async def test_a_light_attempt_runs_in_the_callers_thread() -> None:
    seen: list[dict[str, Any]] = []
    executor = _executor(_where_spec(seen))
    task = _task(
        "where", {"v": "{{ up.output.x }}"}, when="up.output.x > 1", outputs={"up": {"x": 7}}
    )
    ran, events = _now(executor, task)
    assert ran
    assert events[-1].output == {"v": 7}  # type: ignore[attr-defined]
    assert seen[0]["thread"] == threading.current_thread().name
    await _execute(executor, task)
    assert seen[1]["thread"] == threading.current_thread().name


async def test_the_template_limits_hold_in_the_render_thread() -> None:
    registry = HandlerRegistry()
    for spec in builtin_specs():
        registry.register(spec)
    limits = TemplateLimits(timeout_seconds=0.05)
    executor = NodeExecutor(
        registry, Resources(replace(Controls.unrestricted(), template_limits=limits))
    )
    for task in (
        _task("noop", {"value": MACRO}),
        _task("noop", {"value": 1}, when=MACRO),
        _task("condition", {"cases": [{"when": MACRO, "then": ["a"]}]}),
        _task("map", {"items": [1], "handler": "noop", "config": {"value": MACRO}}),
    ):
        events = await _execute(executor, task)
        failed = events[-1]
        assert isinstance(failed, NodeFailed), (task.handler, failed)
        assert "longer than 0.05s (templates.timeout_seconds)" in failed.error.message


async def test_the_loop_runs_while_a_template_bomb_renders() -> None:
    executor = _executor()
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # as `orchestrion serve` sets it
    try:
        ticking = asyncio.create_task(ticker())
        await asyncio.sleep(0.01)
        events = await _execute(executor, _task("noop", {"value": MACRO}))
        stop.set()
        await ticking
    finally:
        sys.setswitchinterval(interval)
    assert isinstance(events[-1], NodeFailed)
    assert "templates.timeout_seconds" in events[-1].error.message
    assert len(gaps) > 50  # the loop ran all along the 1 s render
    assert max(gaps) < 0.25, max(gaps)  # the target is 0.1 s; slack for a loaded machine
