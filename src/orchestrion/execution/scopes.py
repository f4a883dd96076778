"""The layers that set what holds for the whole of an attempt: its log fields, its limits.

Both are context variables, so they follow the attempt into the threads its templates render
in (``templates/threads.py``) and are the caller's again once it ends.
"""

from __future__ import annotations

from typing import Any

from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution.layers import Layer
from orchestrion.handlers.resources import Resources
from orchestrion.logcontext import node_fields
from orchestrion.templates.rendering import enter_template_limits, leave_template_limits

__all__ = ["LogContext", "TemplateLimitsInForce"]


class LogContext(Layer):
    """Every log line of the attempt carries its execution, node, attempt and correlation id
    (``logcontext.py``)."""

    __slots__ = ()

    def enter(self, task: TaskMessage) -> Any:
        return node_fields.set(
            {
                "execution_id": task.execution_id,
                "node_id": task.node_id,
                "attempt": task.attempt,
                "correlation_id": task.correlation_id,
            }
        )

    def leave(self, token: Any) -> None:
        node_fields.reset(token)


class TemplateLimitsInForce(Layer):
    """The policy's template limits hold for every render of the attempt: its config, its
    condition, and what handlers such as condition and map render. Read from the resources
    at each attempt: a process may be given another policy while it runs."""

    __slots__ = ("resources",)

    def __init__(self, resources: Resources) -> None:
        self.resources = resources

    def enter(self, task: TaskMessage) -> Any:
        # Two plain calls rather than a context manager: every attempt enters this scope.
        return enter_template_limits(self.resources.controls.template_limits)

    def leave(self, token: Any) -> None:
        leave_template_limits(token)
