"""The ``map`` handler: dynamic fan-out over a list produced upstream.

Runs an inner handler once per item, at most ``concurrency`` at a time, retrying each item
under its own policy, and completes with the results in input order. The inner ``config`` is
rendered per item with ``item`` and ``index`` added to the template context::

    - id: fetch_each
      handler: map
      dependencies: [list_users]
      config:
        items: "{{ list_users.output.data.users }}"
        handler: http
        config: {url: "https://api.example.com/users/{{ item.id }}"}
        concurrency: 20

With ``handler: workflow`` each item runs a stored workflow as a child execution (a sub-DAG
per item); the map waits for every child and takes their results. Each item gets the
idempotency key ``<node key>:<index>``. Items run inside the node's
attempt: a crash re-runs the whole map (at-least-once per item, deduplicated by those keys).
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.core.backoff import retry_delay, should_retry
from orchestrion.core.reasons import WaitReason
from orchestrion.definition.model import RetryPolicy
from orchestrion.errors import ErrorCategory, NodeError, PermanentNodeError
from orchestrion.handlers.base import LATER, HandlerSpec, NodeContext, Wait
from orchestrion.handlers.config_context import item_context
from orchestrion.templates.rendering import build_context, render_value
from orchestrion.templates.threads import off_loop
from orchestrion.templates.weight import renders_off_loop

__all__ = ["MAP_SPEC", "MapConfig"]

MAX_ITEMS = 100_000
_YIELD_EVERY = 0.005  # seconds of items that never suspend before a runner lets others in


class MapConfig(BaseModel):
    """What to map over, what runs per item, and how failures of items are treated."""

    model_config = ConfigDict(extra="forbid")

    items: list[Any] = Field(
        max_length=MAX_ITEMS,
        description="the list to map over (usually a template: `{{ fetch.output.items }}`)",
    )
    handler: str = Field(
        min_length=1,
        description="the handler run for each item; not one that waits (`approval`, `delay`) "
        "nor `map`: run those per item in a sub-workflow (`workflow`)",
    )
    config: dict[str, Any] = Field(
        default_factory=dict,
        description="its config; `{{ item }}` and `{{ index }}` name the item and its position",
    )
    concurrency: int = Field(default=10, ge=1, le=10_000, description="how many items run at once")
    retry: RetryPolicy = Field(
        default_factory=lambda: RetryPolicy(max_attempts=1),
        description="retries of one item (default: none)",
    )
    on_item_failure: Literal["fail", "collect"] = Field(
        "fail", description="`fail` the node when an item fails, or `collect` the errors and go on"
    )


async def run_map(ctx: NodeContext, config: MapConfig) -> dict[str, Any]:
    from orchestrion.handlers.registry import default_registry

    registry = ctx.resources.registry or default_registry()
    inner = registry.get(config.handler)
    if inner.name == "map":
        raise PermanentNodeError("a map cannot run `map` per item; use a sub-workflow")
    base = build_context(ctx.inputs, ctx.outputs, execution={"id": ctx.execution_id})
    # Item configs with more than plain references render in a thread, off the event loop.
    heavy = renders_off_loop(inner.name, config.config)
    rng = random.Random()
    results: list[Any] = [None] * len(config.items)
    errors: dict[int, dict[str, Any]] = {}
    report = ctx.resources.progress
    total = len(config.items)
    done = 0

    def progressed(step: int = 1) -> None:
        nonlocal done
        done += step
        if report is not None:
            report(
                ctx.execution_id, ctx.node_id, {"done": done, "total": total, "failed": len(errors)}
            )

    # Counted from the start: items that each take long (a child workflow, a slow request)
    # would otherwise show no progress until the first of them ends.
    progressed(0)

    async def one(index: int, item: Any) -> None:
        attempt = 1
        while True:
            try:
                results[index] = await _call(ctx, inner, config, base, index, item, attempt, heavy)
                progressed()
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                category = exc.category if isinstance(exc, NodeError) else "error"
                transient = exc.transient if isinstance(exc, NodeError) else True
                if not should_retry(config.retry, attempt, category, transient):
                    errors[index] = {"index": index, "category": category, "message": str(exc)}
                    progressed()
                    if config.on_item_failure == "fail":
                        raise PermanentNodeError(
                            f"item {index} of {len(config.items)} failed after "
                            f"{attempt} attempt(s): {exc}",
                            category=ErrorCategory.MAP_ITEM,
                        ) from exc
                    return
                await asyncio.sleep(retry_delay(config.retry, attempt, rng.random()))
                attempt += 1

    # ``concurrency`` runners take the items in order, so a map over 100,000 items holds that
    # many tasks, not one per item. An inner handler that never waits (``run_now``) does not
    # suspend: a runner lets the loop in every few milliseconds of such items.
    pending = iter(enumerate(config.items))

    async def runner() -> None:
        yielded = time.perf_counter()
        for index, item in pending:
            await one(index, item)
            if time.perf_counter() - yielded > _YIELD_EVERY:
                await asyncio.sleep(0)
                yielded = time.perf_counter()

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(min(config.concurrency, len(config.items))):
                group.create_task(runner())
    except BaseExceptionGroup as failed:
        # Report the first item failure as the node's error, not an opaque group.
        raise failed.exceptions[0] from None
    return {
        "results": results,
        "count": len(results),
        "failed": len(errors),
        "errors": [errors[i] for i in sorted(errors)],
    }


async def _call(
    ctx: NodeContext,
    inner: HandlerSpec,
    config: MapConfig,
    base: dict[str, Any],
    index: int,
    item: Any,
    attempt: int,
    heavy: bool,
) -> Any:
    if heavy:
        output = await off_loop(_prepare_item, ctx, inner, config, base, index, item, attempt)
    else:
        output = _prepare_item(ctx, inner, config, base, index, item, attempt)
    if isinstance(output, _Prepared):
        output = await inner.run(output.ctx, output.config)
    if isinstance(output, Wait):
        children = ctx.resources.children
        child = (output.data or {}).get("child_execution_id")
        if output.reason != WaitReason.CHILD or children is None or child is None:
            raise PermanentNodeError(f"handler '{inner.name}' waits; it cannot run inside a map")
        # A sub-workflow per item: the map's own attempt waits for each child to finish.
        return await children.wait(child)
    return output


@dataclass(frozen=True, slots=True)
class _Prepared:
    """An item whose handler must be awaited: its rendered config and its context."""

    ctx: NodeContext
    config: Any


def _prepare_item(
    ctx: NodeContext,
    inner: HandlerSpec,
    config: MapConfig,
    base: dict[str, Any],
    index: int,
    item: Any,
    attempt: int,
) -> Any:
    """Render and validate one item's config and run its handler's ``run_now``: its output,
    or ``_Prepared`` when the handler has to be awaited. Runs in a render thread when the
    config is more than light templates (a ``run_now`` has no effect outside the engine, so
    it may run there too)."""
    context = {**base, "item": item, "index": index}
    raw = config.config
    rendered = (
        {k: v if k in inner.raw_keys else render_value(v, context) for k, v in raw.items()}
        if inner.raw_keys
        else render_value(raw, context)
    )
    inner_config = (
        inner.config_model.model_validate(rendered, context=item_context(ctx.resources.controls))
        if inner.config_model
        else rendered
    )
    item_ctx = NodeContext(
        execution_id=ctx.execution_id,
        node_id=f"{ctx.node_id}[{index}]",
        attempt=attempt,
        idempotency_key=f"{ctx.idempotency_key}:{index}",
        inputs=ctx.inputs,
        outputs=ctx.outputs,
        dependencies=ctx.dependencies,
        handler=inner.name,
        resources=ctx.resources,
        deadline=ctx.deadline,
        classification=ctx.classification,
        map_items=len(config.items),
    )
    output = LATER if inner.run_now is None else inner.run_now(item_ctx, inner_config)
    return _Prepared(item_ctx, inner_config) if output is LATER else output


MAP_SPEC = HandlerSpec(
    name="map",
    run=run_map,
    config_model=MapConfig,
    aliases=("foreach",),
    description="run a handler per item of a list, with a concurrency limit, results in order",
    raw_keys=frozenset({"config"}),
)
