"""The layers around a node attempt, and the stack that composes them once per process.

A layer is one concern the executor applies to every attempt (its log context, its template
limits, where its secrets may go, its timeout, its circuit breaker, the scrubbing of its
output): a ``Layer`` subclass that overrides only the hooks it needs, as dramatiq's
middleware does. The executor runs every attempt, inline (``run_now``) or in a task
(``execute``), through the same hooks:

- ``enter`` / ``leave``: around the whole attempt, on both paths (``leave`` gets what
  ``enter`` returned);
- ``check``: before anything renders, on both paths: raise to refuse the attempt;
- ``call``: around the awaited handler call (an inline ``run_now`` has nothing to await:
  no timeout can run out and no circuit guards it); ``proceed`` is the rest of the stack,
  and a layer with nothing to do for an attempt returns ``proceed``'s awaitable as it is;
- ``output`` / ``error``: what the attempt's output and error become before they are
  reported;
- ``has_work_for``: whether the layer's ``output`` can change anything for attempts of a
  handler, decided once per handler (a process without secrets scrubs nothing from a
  handler that calls no llm provider).

``Stack`` sorts the layers by the hooks they override and builds the chain of ``call`` once,
and the outputs of each handler the first time it reports one, so that an attempt pays
nothing for a hook no layer has, or that has no work for its handler.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from orchestrion.core.events import ErrorInfo
from orchestrion.dispatch.base import TaskMessage
from orchestrion.handlers.base import HandlerSpec, NodeContext

__all__ = ["Attempt", "Layer", "Proceed", "Stack"]


class Attempt:
    """One attempt up to its handler's call: the task, the handler, its rendered config, its
    context, and its output once there is one (``LATER`` until the handler is called)."""

    __slots__ = ("config", "ctx", "inputs", "output", "spec", "task")

    def __init__(
        self,
        task: TaskMessage,
        spec: HandlerSpec,
        config: Any,
        ctx: NodeContext,
        output: Any,
        inputs: dict[str, Any] | None = None,
    ) -> None:
        self.task = task
        self.spec = spec
        self.config = config
        self.ctx = ctx
        self.output = output
        self.inputs = inputs  # the rendered config as stored (``rendered_inputs.py``)


Proceed = Callable[[Attempt], Awaitable[Any]]
OutputHook = Callable[[TaskMessage, Any], Any]


class Layer:
    """One concern around every attempt; each hook does nothing unless overridden."""

    __slots__ = ()

    def enter(self, task: TaskMessage) -> Any:
        return None

    def leave(self, token: Any) -> None:
        return None

    def check(self, task: TaskMessage) -> None:
        return None

    def call(self, attempt: Attempt, proceed: Proceed) -> Awaitable[Any]:
        """What awaits the rest of the stack (``proceed``) for ``attempt``: a coroutine of
        the layer's own, or, when it has nothing to do for this attempt, ``proceed``'s
        awaitable itself (no frame of its own)."""
        return proceed(attempt)

    def output(self, task: TaskMessage, output: Any) -> Any:
        return output

    def error(self, task: TaskMessage, info: ErrorInfo) -> ErrorInfo:
        return info

    def has_work_for(self, spec: HandlerSpec) -> bool:
        """Whether ``output`` may change the output of an attempt of ``spec``; False only
        when it never does for such attempts, whatever their task."""
        return True


def _handler_call(attempt: Attempt) -> Awaitable[Any]:
    # The handler's own coroutine, awaited by the layer above: no frame of its own.
    return attempt.spec.run(attempt.ctx, attempt.config)


def _overrides(layer: Layer, hook: str) -> bool:
    return getattr(type(layer), hook) is not getattr(Layer, hook)


class Stack:
    """``layers``, outermost first, composed once: what the executor runs each attempt in."""

    __slots__ = (
        "_by_handler",
        "_enters",
        "_errors",
        "_leaves",
        "_outputs",
        "call",
        "checks",
        "layers",
    )

    def __init__(self, layers: Sequence[Layer]) -> None:
        self.layers = tuple(layers)
        scoped = [layer for layer in self.layers if _overrides(layer, "enter")]
        self._enters = tuple(layer.enter for layer in scoped)
        self._leaves = tuple(layer.leave for layer in reversed(scoped))
        # Public: the executor runs them itself (usually none: no call at all then).
        self.checks = tuple(layer.check for layer in self.layers if _overrides(layer, "check"))
        self._outputs = tuple(
            layer for layer in reversed(self.layers) if _overrides(layer, "output")
        )
        self._errors = tuple(
            layer.error for layer in reversed(self.layers) if _overrides(layer, "error")
        )
        # handler name -> (its spec, the outputs of the layers with work for it)
        self._by_handler: dict[str, tuple[HandlerSpec, tuple[OutputHook, ...]]] = {}
        call: Proceed = _handler_call
        for layer in reversed(self.layers):
            if _overrides(layer, "call"):
                call = functools.partial(layer.call, proceed=call)
        self.call: Proceed = call

    def enter(self, task: TaskMessage) -> list[Any]:
        """Enter every scope of ``task``'s attempt; what ``leave`` needs to leave them."""
        # A comprehension: half the cost of ``map(operator.call, ...)`` for two layers.
        return [enter(task) for enter in self._enters]

    def leave(self, tokens: list[Any]) -> None:
        # Innermost first, by index: ``zip(..., reversed(...), strict=True)`` cost three
        # times as much, on every attempt.
        i = len(tokens)
        for leave in self._leaves:
            i -= 1
            leave(tokens[i])

    def check(self, task: TaskMessage) -> None:
        for check in self.checks:
            check(task)

    def output(self, task: TaskMessage, output: Any, spec: HandlerSpec) -> Any:
        """``output`` of an attempt of ``spec`` as the layers with work for it leave it."""
        planned = self._by_handler.get(spec.name)
        if planned is None or planned[0] is not spec:  # first seen, or registered anew
            hooks = tuple(layer.output for layer in self._outputs if layer.has_work_for(spec))
            planned = self._by_handler[spec.name] = (spec, hooks)
        for layer_output in planned[1]:
            output = layer_output(task, output)
        return output

    def error(self, task: TaskMessage, info: ErrorInfo) -> ErrorInfo:
        for layer_error in self._errors:
            info = layer_error(task, info)
        return info
