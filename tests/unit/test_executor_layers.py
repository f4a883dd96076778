"""The executor's layers: one path for every attempt, inline (``run_now``) or awaited.

The layers an executor composes see the inline attempts as they see the awaited ones, in the
same order: scopes and checks outermost first, outputs and errors innermost first.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from orchestrion.core.events import ErrorInfo, Event, NodeFailed, NodeSucceeded
from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution.executor import NodeExecutor
from orchestrion.execution.layers import Attempt, Layer, Proceed, Stack
from orchestrion.handlers.base import Controls, HandlerSpec, Resources, run_of
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry


class Recorder(Layer):
    """Notes every hook it sees, and marks the outputs and errors it passes on."""

    __slots__ = ("name", "seen")

    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    def enter(self, task: TaskMessage) -> Any:
        self.seen.append(f"enter {self.name}")
        return self.name

    def leave(self, token: Any) -> None:
        self.seen.append(f"leave {token}")

    def check(self, task: TaskMessage) -> None:
        self.seen.append(f"check {self.name}")

    async def call(self, attempt: Attempt, proceed: Proceed) -> Any:
        self.seen.append(f"call {self.name}")
        return await proceed(attempt)

    def output(self, task: TaskMessage, output: Any) -> Any:
        return {**output, "by": [*output.get("by", []), self.name]}

    def error(self, task: TaskMessage, info: ErrorInfo) -> ErrorInfo:
        return replace(info, message=f"{info.message} <{self.name}>")


def _executor(seen: list[str], spec: HandlerSpec) -> NodeExecutor:
    registry = HandlerRegistry([*builtin_specs(), spec])
    executor = NodeExecutor(registry, Resources(Controls.unrestricted()))
    executor.stack = Stack([Recorder("outer", seen), Recorder("inner", seen)])
    return executor


def _task(handler: str) -> TaskMessage:
    return TaskMessage("e1", "n1", 1, handler, {}, {}, {}, idempotency_key="k")


def _answer(ctx: Any, config: Any) -> dict[str, Any]:
    return {"ok": True}


def _fail(ctx: Any, config: Any) -> dict[str, Any]:
    raise RuntimeError("no")


SCOPES_AND_CHECKS = ["enter outer", "enter inner", "check outer", "check inner"]


async def test_inline_and_awaited_attempts_go_through_the_same_layers() -> None:
    inline = HandlerSpec("inline", run_of(_answer), run_now=_answer)
    awaited = HandlerSpec("awaited", run_of(_answer))
    seen: list[str] = []
    events: list[Event] = []
    executor = _executor(seen, inline)
    assert executor.run_now(_task("inline"), lambda _e, event: events.append(event))
    assert seen == [*SCOPES_AND_CHECKS, "leave inner", "leave outer"]
    assert isinstance(events[-1], NodeSucceeded)
    assert events[-1].output == {"ok": True, "by": ["inner", "outer"]}

    seen.clear()
    executor = _executor(seen, awaited)
    await executor.execute(_task("awaited"), lambda _e, event: events.append(event))
    assert seen == [*SCOPES_AND_CHECKS, "call outer", "call inner", "leave inner", "leave outer"]
    assert isinstance(events[-1], NodeSucceeded)
    assert events[-1].output == {"ok": True, "by": ["inner", "outer"]}


async def test_errors_pass_through_the_layers_on_both_paths() -> None:
    spec = HandlerSpec("failing", run_of(_fail), run_now=_fail)
    events: list[Event] = []
    executor = _executor([], spec)
    assert executor.run_now(_task("failing"), lambda _e, event: events.append(event))
    await executor.execute(
        replace(_task("failing"), handler="failing"), lambda _e, e: events.append(e)
    )
    failures = [event for event in events if isinstance(event, NodeFailed)]
    assert len(failures) == 2
    assert all(f.error.message.endswith("<inner> <outer>") for f in failures)


class OnlyFor(Recorder):
    """A recorder whose output has work for one handler only."""

    __slots__ = ()

    def has_work_for(self, spec: HandlerSpec) -> bool:
        return spec.name == "inline"


async def test_a_layer_without_work_for_a_handler_leaves_its_outputs_alone() -> None:
    inline = HandlerSpec("inline", run_of(_answer), run_now=_answer)
    other = HandlerSpec("other", run_of(_answer), run_now=_answer)
    events: list[Event] = []
    registry = HandlerRegistry([*builtin_specs(), inline, other])
    executor = NodeExecutor(registry, Resources(Controls.unrestricted()))
    executor.stack = Stack([OnlyFor("only", [])])
    for handler in ("inline", "other", "inline"):
        assert executor.run_now(_task(handler), lambda _e, event: events.append(event))
    outputs = [event.output for event in events if isinstance(event, NodeSucceeded)]
    assert outputs == [{"ok": True, "by": ["only"]}, {"ok": True}, {"ok": True, "by": ["only"]}]
