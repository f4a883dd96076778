"""Evaluating success criteria at the end of a run: the rules, as one function of the facts.

``evaluate(plans, facts)`` reads no clock and does no I/O; the engine gives it what the run
left (outputs, inputs, the nodes that did not complete, the duration) and hands the outcomes
to the machine (``engine/judging.py``). How a condition's names resolve is in
``definition/criteria.py``. A criterion whose condition cannot be evaluated (a name not
found, an ambiguous field, a template error) fails with that reason as its ``detail``.

Values are shown only when they are small scalars (a bool, a number, ``null``, a short text),
and never when the condition may read the output of a ``pii`` or ``phi`` node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from orchestrion.core.criteria import CriterionResult
from orchestrion.definition.criteria import TASK, WORKFLOW, CriterionPlan
from orchestrion.templates.rendering import (
    TemplateLimits,
    build_context,
    condition_truth,
    render_value,
    template_limits,
)
from orchestrion.templates.weight import is_light

__all__ = ["CriteriaFacts", "evaluate", "renders_off_loop", "unevaluated"]

_MAX_SHOWN_TEXT = 200
_MAX_LISTED = 10
_HIDDEN = "values are not shown: the condition may read a pii or phi node's output"


@dataclass(frozen=True, slots=True)
class CriteriaFacts:
    """What a run left, as the criteria read it."""

    inputs: Mapping[str, Any]
    outputs: Mapping[str, Any]  # node id -> output, of the nodes that completed
    result_node: str | None = None  # the workflow's one ``output`` node, if it has one
    incomplete: tuple[tuple[str, str], ...] = ()  # (node id, state) not ``completed``
    duration: float | None = None  # seconds since the execution started


def renders_off_loop(plans: tuple[CriterionPlan, ...]) -> bool:
    """Whether a condition is more than a light expression (see ``templates/weight.py``)."""
    return any(p.source is not None and not is_light(p.source) for p in plans)


def evaluate(
    plans: tuple[CriterionPlan, ...],
    facts: CriteriaFacts,
    limits: TemplateLimits | None = None,
) -> tuple[CriterionResult, ...]:
    """The outcome of each criterion, in order."""
    with template_limits(limits):
        return tuple(_one(plan, facts) for plan in plans)


def unevaluated(plans: tuple[CriterionPlan, ...], reason: str) -> tuple[CriterionResult, ...]:
    """Every criterion failed for ``reason`` (the evaluation itself could not run)."""
    return tuple(CriterionResult(p.condition, p.required, False, None, reason) for p in plans)


def _one(plan: CriterionPlan, facts: CriteriaFacts) -> CriterionResult:
    if plan.source is None:
        return _all_completed(plan, facts)
    for task in plan.tasks:
        if task not in facts.outputs:
            reason = f"task '{task}' did not complete: it has no outputs to read"
            return CriterionResult(plan.condition, plan.required, False, None, reason)
    found: dict[str, tuple[Any, str]] = {}
    for name in plan.fields:
        resolved = _resolve(name, plan, facts)
        if isinstance(resolved, str):
            return CriterionResult(plan.condition, plan.required, False, None, resolved)
        found[name] = resolved
    context = build_context(facts.inputs, facts.outputs)
    context[TASK] = {
        node: {"outputs": output, "output": output} for node, output in facts.outputs.items()
    }
    context[WORKFLOW] = {} if facts.duration is None else {"duration": facts.duration}
    for name, (value, _node) in found.items():
        context[name] = value
    try:
        value = render_value(plan.source, context)
    except Exception as exc:  # a template error, a limit: the criterion fails, saying why
        reason = f"cannot be evaluated ({type(exc).__name__})" if plan.classified else str(exc)
        return CriterionResult(plan.condition, plan.required, False, None, reason[:500])
    passed = condition_truth(value)
    if plan.classified:
        return CriterionResult(plan.condition, plan.required, passed, None, _HIDDEN)
    parts = [f"evaluated to {_text(value)}"]
    parts += [f"{name} = {_text(v)} (from {node})" for name, (v, node) in found.items()]
    return CriterionResult(plan.condition, plan.required, passed, _shown(value), "; ".join(parts))


def _all_completed(plan: CriterionPlan, facts: CriteriaFacts) -> CriterionResult:
    if not facts.incomplete:
        return CriterionResult(plan.condition, plan.required, True, True, None)
    listed = ", ".join(f"{node} ({state})" for node, state in facts.incomplete[:_MAX_LISTED])
    more = len(facts.incomplete) - _MAX_LISTED
    detail = f"not completed: {listed}" + (f" and {more} more" if more > 0 else "")
    return CriterionResult(plan.condition, plan.required, False, False, detail)


def _resolve(name: str, plan: CriterionPlan, facts: CriteriaFacts) -> tuple[Any, str] | str:
    """``(value, node id)`` of the bare output field ``name``, or why it cannot be read."""
    outputs = facts.outputs
    owner = plan.bound.get(name)
    if owner is not None:
        output = outputs.get(owner)
        if owner not in outputs:
            return f"task '{owner}', which declares output '{name}', did not complete"
        if not isinstance(output, Mapping) or name not in output:
            return f"the output of task '{owner}' has no field '{name}'"
        return output[name], owner
    if facts.result_node is not None:
        result = outputs.get(facts.result_node)
        if isinstance(result, Mapping) and name in result:
            return result[name], facts.result_node
    holders = sorted(
        node for node, out in outputs.items() if isinstance(out, Mapping) and name in out
    )
    if len(holders) == 1:
        return outputs[holders[0]][name], holders[0]
    if not holders:
        return f"no node's output has a field '{name}'"
    options = " or ".join(f"task.{node}.outputs.{name}" for node in holders[:3])
    return f"output field '{name}' is in the outputs of {', '.join(holders)}; write {options}"


def _shown(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str) and len(value) <= _MAX_SHOWN_TEXT:
        return value
    return None


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    shown = _shown(value)
    if shown is None and value is not None:
        return f"a {type(value).__name__}"
    return "null" if shown is None else repr(shown)
