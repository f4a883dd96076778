"""The ``workflow`` handler: run a stored workflow as a child execution and take its result.

The node starts the child (idempotently: the child's key derives from the node attempt's key,
so a re-run finds the same child), then waits without holding a worker until the child ends.
A completed child completes the node with ``{"child_execution_id", "status", "result"}``; a
failed or cancelled one fails it. Cancelling the parent cancels the child. The engine that
runs the node provides the starter (``resources.children``).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.resources import ChildStarter

__all__ = [
    "WORKFLOW_SPEC",
    "ChildStarter",
    "WorkflowConfig",
]


class WorkflowConfig(BaseModel):
    """Which stored workflow to run (newest version unless ``version``), with what inputs."""

    model_config = ConfigDict(extra="forbid")

    workflow: str = Field(
        min_length=1, description="the name of the stored workflow to run as a child execution"
    )
    version: str | None = Field(None, description="its version; none: the newest")
    inputs: dict[str, Any] = Field(default_factory=dict, description="the child's input params")
    wait: bool = Field(
        True, description="wait for the child and return its result; false: start it and go on"
    )


async def run_workflow(ctx: NodeContext, config: WorkflowConfig) -> Any:
    children = ctx.resources.children
    if children is None:
        raise PermanentNodeError(
            "the workflow handler needs an engine to start child executions",
            category=ErrorCategory.CONFIG,
        )
    return await children.start(ctx, config)


WORKFLOW_SPEC = HandlerSpec(
    name="workflow",
    run=run_workflow,
    config_model=WorkflowConfig,
    aliases=("subworkflow", "child_workflow"),
    description="run another stored workflow as a child execution and wait for it",
)
