"""The ``routing`` handler: one routing rule of a definition, evaluated as its node.

The nodes are made from the definition's ``routing`` section (``definition/routing.py``), not
written by hand. The node evaluates its rule's condition over the outputs of the tasks it
follows and ``workflow.duration``, and then:

* condition false: completes with ``{"fired": false}``; a rule on the run (no task) instead
  waits (reason ``routing``) until the next ``workflow.duration`` threshold its condition
  names, or ``WATCH_SECONDS``, and evaluates again;
* ``escalate`` / ``alert``: completes with ``{"fired": true, "notice": {...}}``; the machine
  journals the notice (``execution.notice``) with the completion and hands it to the notice
  sinks after the commit;
* ``require_approval``: waits for a decision (reason ``approval``) by a member of one of the
  ``approvers`` teams, with an ``approval_required`` notice to them; the tasks after the ones
  the condition reads wait for this node, and a rejection fails it.

It has nothing to wait for and no effect outside the engine, so it runs in the engine's turn.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.core.notices import NoticeKind
from orchestrion.core.reasons import WaitReason
from orchestrion.definition.routing import WATCH_SECONDS
from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.handlers.base import HandlerSpec, NodeContext, Wait, run_of
from orchestrion.templates.rendering import build_context, condition_truth, render_value

__all__ = ["ROUTING_SPEC", "RoutingConfig", "routing_now"]

_KINDS = {"escalate": NoticeKind.ESCALATION, "alert": NoticeKind.ALERT}


class RoutingConfig(BaseModel):
    """A routing rule as its node carries it (made by the engine from ``routing:``)."""

    model_config = ConfigDict(extra="forbid")

    rule: int = Field(ge=1, description="the rule's number (1-based)")
    action: Literal["escalate", "require_approval", "alert"] = Field(
        description="what the rule does when its condition holds"
    )
    condition: str = Field(min_length=1, description="the condition, as one template expression")
    teams: list[str] = Field(
        default_factory=list, description="the target, approvers or recipients (team names)"
    )
    approvers: list[str] = Field(
        default_factory=list, description="who may decide (require_approval): team names"
    )
    fields: dict[str, str] = Field(
        default_factory=dict,
        description="bare output fields of the condition and the task that declares each",
    )
    tasks: list[str] = Field(
        default_factory=list, description="the tasks whose outputs the condition reads"
    )
    message: str | None = Field(
        None, description="what people are told; default: the rule and its condition"
    )
    watch: list[float] | None = Field(
        None, description="a rule on the run: the workflow.duration thresholds its condition names"
    )
    started_at: float | None = Field(
        None, description="when the execution started (given by the engine)"
    )


def routing_now(ctx: NodeContext, config: RoutingConfig) -> Any:
    now = time.time()
    started = config.started_at if config.started_at is not None else now
    duration = max(0.0, now - started)
    fired = condition_truth(render_value(config.condition, _context(ctx, config, duration)))
    condition = config.condition.removeprefix("{{ ").removesuffix(" }}")
    message = config.message or f"routing rule {config.rule}: {condition}"
    facts: dict[str, Any] = {"condition": condition}
    if config.tasks:
        facts["tasks"] = list(config.tasks)
    else:
        facts["duration"] = round(duration, 3)
    if not fired:
        if config.watch is None:
            return {"fired": False, "rule": config.rule, "action": config.action}
        next_bound = next((started + b for b in config.watch if started + b >= now), None)
        wake_at = next_bound + 0.001 if next_bound is not None else now + WATCH_SECONDS
        return Wait(WaitReason.ROUTING, wake_at=wake_at, data={"rule": config.rule})
    notice: dict[str, Any] = {
        "kind": _KINDS.get(config.action, NoticeKind.APPROVAL_REQUIRED).value,
        "rule": config.rule,
        "teams": list(config.teams),
        "message": message,
        "data": facts,
    }
    if config.action == "require_approval":
        if ctx.wait_result is not None:  # not a timeout: this gate has none; ask again
            notice = {}
        return Wait(
            WaitReason.APPROVAL,
            data={
                "message": message,
                "approvers": list(config.approvers or config.teams),
                "rule": config.rule,
                **({"notice": notice} if notice else {}),
            },
        )
    return {"fired": True, "rule": config.rule, "action": config.action, "notice": notice}


def _context(ctx: NodeContext, config: RoutingConfig, duration: float) -> dict[str, Any]:
    context = build_context(ctx.inputs, ctx.outputs, execution={"id": ctx.execution_id})
    context["task"] = {
        node: {"outputs": output, "output": output} for node, output in ctx.outputs.items()
    }
    context["workflow"] = {"duration": duration}
    for name, owner in config.fields.items():
        output = ctx.outputs.get(owner)
        if not isinstance(output, Mapping) or name not in output:
            raise PermanentNodeError(
                f"routing rule {config.rule}: the output of task '{owner}' has no field '{name}'",
                category=ErrorCategory.ROUTING,
            )
        context[name] = output[name]
    return context


ROUTING_SPEC = HandlerSpec(
    name="routing",
    run=run_of(routing_now),
    run_now=routing_now,
    config_model=RoutingConfig,
    description="a routing rule of the workflow (made from its `routing:` section)",
    raw_keys=frozenset({"condition"}),
    waits=True,
)
