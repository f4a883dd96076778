"""Control-flow handlers: ``condition`` (choose branches), ``delay`` (durable timer),
``approval`` (wait for a person).

``condition`` completes with ``{"branches": [child ids]}``; the state machine skips the
children it did not choose (``branch_not_taken``) and skipping propagates. ``delay`` and
``approval`` return ``Wait``: the node parks without holding a worker, survives restarts, and
either a timer (``wake_at``) or a decision (``Engine.decide``) ends the wait. When a timer ends
it, the handler runs once more with ``ctx.wait_result`` set and decides what that means.
"""

from __future__ import annotations

import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.core.reasons import WaitReason
from orchestrion.definition.durations import Duration
from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.handlers.base import HandlerSpec, NodeContext, Wait, run_of
from orchestrion.templates.rendering import build_context, evaluate_condition

__all__ = [
    "APPROVAL_SPEC",
    "CONDITION_SPEC",
    "DELAY_SPEC",
    "ApprovalConfig",
    "ConditionCase",
    "ConditionConfig",
    "DelayConfig",
]


class ConditionCase(BaseModel):
    """One case: when ``when`` holds, the children named in ``then`` run."""

    model_config = ConfigDict(extra="forbid")

    when: str = Field(min_length=1, description="a condition: `score.output.value > 0.8`")
    then: list[str] = Field(min_length=1)


class ConditionConfig(BaseModel):
    """``cases`` are tried in order; ``mode: first`` takes the first that holds (exclusive
    choice), ``mode: all`` every one that holds (multi-choice); ``default`` when none does."""

    model_config = ConfigDict(extra="forbid")

    cases: list[ConditionCase] = Field(
        default_factory=list,
        description="tried in order: each a `when` condition and the children (`then`) it runs",
    )
    default: list[str] = Field(
        default_factory=list, description="the children to run when no case holds"
    )
    mode: Literal["first", "all"] = Field(
        "first",
        description=(
            "`first`: the first case that holds (exclusive choice); `all`: every case that holds"
        ),
    )


def condition_now(ctx: NodeContext, config: ConditionConfig) -> dict[str, Any]:
    context = build_context(ctx.inputs, ctx.outputs, execution={"id": ctx.execution_id})
    branches: list[str] = []
    matched: list[int] = []
    for number, case in enumerate(config.cases):
        if evaluate_condition(case.when, context):
            matched.append(number)
            branches.extend(b for b in case.then if b not in branches)
            if config.mode == "first":
                break
    if not matched:
        branches = list(config.default)
    return {"branches": branches, "matched_cases": matched}


class DelayConfig(BaseModel):
    """Wait ``seconds`` (a duration: ``30``, ``"5m"``) or until the epoch time ``until``."""

    model_config = ConfigDict(extra="forbid")

    seconds: Duration | None = Field(None, description="how long to wait (a duration)")
    until: float | None = Field(None, description="wait until this time (epoch seconds) instead")


def delay_now(ctx: NodeContext, config: DelayConfig) -> Any:
    if ctx.wait_result is not None:
        return {"delayed_until": ctx.wait_result.get("wake_at"), "woke_at": time.time()}
    if config.until is None and config.seconds is None:
        raise PermanentNodeError("delay needs `seconds` or `until`", category=ErrorCategory.CONFIG)
    wake_at = config.until if config.until is not None else time.time() + (config.seconds or 0)
    return Wait(WaitReason.TIMER, wake_at=wake_at, data={"wake_at": wake_at})


class ApprovalConfig(BaseModel):
    """A person approves or rejects through the API or CLI; ``timeout`` decides otherwise."""

    model_config = ConfigDict(extra="forbid")

    message: str = Field("approval required", description="what the person deciding is shown")
    approvers: list[str] = Field(
        default_factory=list, description="who may decide, shown with the request"
    )
    timeout: Duration | None = Field(
        None, description="how long to wait for a decision (a duration); none: wait without end"
    )
    on_timeout: Literal["reject", "approve", "fail"] = Field(
        "reject",
        description="the outcome when the timeout passes: reject, approve, or fail the node",
    )
    on_reject: Literal["fail", "continue"] = Field(
        "fail",
        description=(
            "`fail` the node on a rejection, or `continue` with the rejection as its output"
        ),
    )


def approval_now(ctx: NodeContext, config: ApprovalConfig) -> Any:
    if ctx.wait_result is not None:  # nobody answered in time
        if config.on_timeout == "approve":
            return {"approved": True, "decided_by": None, "reason": "approved on timeout"}
        if config.on_timeout == "reject" and config.on_reject == "continue":
            return {"approved": False, "decided_by": None, "reason": "rejected on timeout"}
        raise PermanentNodeError(
            f"approval of '{ctx.node_id}' timed out after {config.timeout:g}s"
            if config.timeout
            else f"approval of '{ctx.node_id}' timed out",
            category=ErrorCategory.APPROVAL_TIMEOUT,
        )
    wake_at = time.time() + config.timeout if config.timeout else None
    return Wait(
        WaitReason.APPROVAL,
        wake_at=wake_at,
        data={
            "message": config.message,
            "approvers": config.approvers,
            "on_reject": config.on_reject,
        },
    )


CONDITION_SPEC = HandlerSpec(
    name="condition",
    run=run_of(condition_now),
    run_now=condition_now,
    config_model=ConditionConfig,
    description="choose which children run; the others are skipped",
    raw_keys=frozenset({"cases"}),
)
DELAY_SPEC = HandlerSpec(
    name="delay",
    run=run_of(delay_now),
    run_now=delay_now,
    config_model=DelayConfig,
    aliases=("timer", "sleep_until"),
    description="a durable timer",
    waits=True,
)
APPROVAL_SPEC = HandlerSpec(
    name="approval",
    run=run_of(approval_now),
    run_now=approval_now,
    config_model=ApprovalConfig,
    aliases=("human_approval",),
    description="wait for a person to approve or reject",
    fixed_keys=frozenset({"approvers", "timeout", "on_timeout", "on_reject"}),
    waits=True,
)
