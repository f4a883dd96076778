"""The ``input``, ``output`` and ``noop`` handlers: where data enters and leaves a workflow.

``input`` hands the execution's input params (over config defaults) to its dependents;
``output`` gathers its dependencies' outputs into the workflow result; ``noop`` returns a
fixed value, optionally after a sleep, for tests, demos and benchmarks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.handlers.base import LATER, HandlerSpec, NodeContext, run_of

__all__ = [
    "INPUT_SPEC",
    "NOOP_SPEC",
    "OUTPUT_SPEC",
    "InputConfig",
    "NoopConfig",
    "OutputConfig",
    "input_now",
    "noop_now",
    "output_now",
    "run_input",
    "run_noop",
    "run_output",
]


class InputConfig(BaseModel):
    """Config of ``input``: default values for params and the params that must be given."""

    # Built on first use (as OutputConfig): this module is loaded for every run's ``noop``.
    model_config = ConfigDict(extra="forbid", defer_build=True)

    defaults: dict[str, Any] = Field(
        default_factory=dict, description="values for params the execution's inputs leave out"
    )
    required: list[str] = Field(
        default_factory=list,
        description="params the execution must be given; a missing one fails the node",
    )


class OutputConfig(BaseModel):
    """Config of ``output``: an explicit ``value`` replaces the aggregated dependency outputs."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    value: Any = Field(
        None,
        description=(
            "the execution's result; without it, the outputs of the node's dependencies by node id"
        ),
    )


class NoopConfig(BaseModel):
    """Config of ``noop``: the value to return and how long to sleep first; other keys ignored."""

    model_config = ConfigDict(extra="allow")

    value: Any = Field(None, description="what the node returns")
    sleep: float = Field(default=0.0, ge=0, description="seconds to wait before returning")


def input_now(ctx: NodeContext, config: InputConfig) -> dict[str, Any]:
    """The execution's input params merged over ``defaults``; missing required ones fail."""
    merged = {**config.defaults, **ctx.inputs}
    missing = [name for name in config.required if name not in merged]
    if missing:
        names = ", ".join(f"'{name}'" for name in missing)
        raise PermanentNodeError(
            f"missing required input param{'s' if len(missing) > 1 else ''}: {names}",
            category=ErrorCategory.INPUT,
            details={"missing": missing},
        )
    return merged


def output_now(ctx: NodeContext, config: OutputConfig) -> Any:
    """``{dependency_id: its output}``, or ``config.value`` when the node sets one."""
    # ``value: null`` given on purpose is a value; only an absent key means "aggregate".
    if "value" in config.model_fields_set:
        return config.value
    # A dependency skipped under a permissive trigger rule has no output: it shows as None.
    return {dep: ctx.outputs.get(dep) for dep in ctx.dependencies}


def noop_now(ctx: NodeContext, config: NoopConfig) -> Any:
    """``config.value`` at once, or ``LATER`` when there is a sleep to wait out first."""
    return LATER if config.sleep > 0 else config.value


async def run_noop(ctx: NodeContext, config: NoopConfig) -> Any:
    """Sleep ``config.sleep`` seconds, then return ``config.value``."""
    if config.sleep > 0:
        await asyncio.sleep(config.sleep)
    return config.value


run_input = run_of(input_now)
run_output = run_of(output_now)

INPUT_SPEC = HandlerSpec(
    name="input",
    run=run_input,
    run_now=input_now,
    config_model=InputConfig,
    description="Entry point: the execution's input params over config defaults.",
)
OUTPUT_SPEC = HandlerSpec(
    name="output",
    run=run_output,
    run_now=output_now,
    config_model=OutputConfig,
    description="Exit point: aggregates the outputs of its dependencies (or returns `value`).",
)
NOOP_SPEC = HandlerSpec(
    name="noop",
    run=run_noop,
    run_now=noop_now,
    config_model=NoopConfig,
    description="Does nothing: returns `value`, optionally after `sleep` seconds.",
)
