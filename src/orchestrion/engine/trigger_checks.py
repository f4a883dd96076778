"""Checks of what a trigger brings: input params against the declared inputs, node overrides.

Each finds every problem, naming the input or node; the engine answers a start with those of
its inputs and its overrides together (``Definitions.checked_start``). Values that
cannot be stored or rendered safely (``safe_data``: lone surrogates, nesting beyond 64
levels, integers of more than 100 digits, NaN) are refused first, whoever passes them: the
API, the command line or a Python caller of ``orchestrion.run``. An override is checked as
the definition's config was: the node's config with the override applied must fit the
handler's config schema (a template value is checked when it is rendered), so a bad key or
value is refused when the trigger arrives, not when the node finally runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from orchestrion import safe_data
from orchestrion.definition.model import WorkflowSpec
from orchestrion.definition.validate import (
    config_errors,
    config_templates,
    describe_pydantic_error,
    format_path,
    map_item_problem,
)
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.errors import DefinitionError, DefinitionIssue, HandlerNotFound, no_such_node
from orchestrion.handlers.registry import HandlerRegistry
from orchestrion.templates.rendering import (
    RESERVED_NAMES,
    is_template,
    template_errors,
    template_info,
)

__all__ = [
    "FROM_NODE",
    "INPUTS",
    "OVERRIDES",
    "check_from_node",
    "check_inputs",
    "input_issues",
    "override_problems",
]

# The sources a trigger's problems are named by: what the request says, not the definition.
INPUTS, OVERRIDES, FROM_NODE = "execution inputs", "node overrides", "from_node"

_INPUT_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def _unsafe(value: Any, field: str, node: str | None = None) -> DefinitionIssue | None:
    try:
        safe_data.check(value)
    except safe_data.UnsafeData as exc:
        return DefinitionIssue(
            f"{exc.reason} {exc.where}".replace(" at the top level", ""),
            node=node,
            field=field,
            code=exc.code,
        )
    return None


def check_inputs(spec: WorkflowSpec, inputs: dict[str, Any]) -> dict[str, Any]:
    """``inputs`` with the declared defaults filled in, or ``DefinitionError`` listing every
    problem (source ``execution inputs``)."""
    result, issues = input_issues(spec, inputs)
    if issues:
        raise DefinitionError(issues, source=INPUTS, request=True)
    return result


def input_issues(
    spec: WorkflowSpec, inputs: dict[str, Any]
) -> tuple[dict[str, Any], list[DefinitionIssue]]:
    """``inputs`` with the declared defaults filled in, and every problem found in them."""
    for name, value in inputs.items():
        label = name if isinstance(name, str) else repr(name)
        issue = _unsafe({label: value}, "inputs")
        if issue is not None:  # the first says enough: the caller sent unsafe data
            return dict(inputs), [issue]
    issues: list[DefinitionIssue] = _undeclared(spec, inputs)
    result = dict(inputs)
    for name, param in spec.inputs.items():
        if name not in result or result[name] is None:
            if param.default is not None:
                result[name] = param.default
            elif param.required:
                issues.append(
                    DefinitionIssue(
                        f"required input '{name}' is missing",
                        field=f"inputs.{name}",
                        code="missing_input",
                    )
                )
            continue
        allowed = _INPUT_TYPES.get(param.type)
        value = result[name]
        if allowed and (
            not isinstance(value, allowed)
            or (param.type in ("number", "integer") and isinstance(value, bool))
        ):
            issues.append(
                DefinitionIssue(
                    f"input '{name}' must be of type {param.type}, got {type(value).__name__}",
                    field=f"inputs.{name}",
                    code="input_type",
                )
            )
    return result, issues


def _undeclared(spec: WorkflowSpec, inputs: dict[str, Any]) -> list[DefinitionIssue]:
    """An input the workflow does not declare, where it declares its inputs: most often a
    misspelt name, which would otherwise run with the default in its place."""
    if not spec.inputs:
        return []  # a workflow without declared inputs takes whatever it is given
    declared = sorted(spec.inputs)
    issues = []
    for name in inputs:
        if name in spec.inputs:
            continue
        from difflib import get_close_matches  # here: only a misspelt input needs it

        close = get_close_matches(str(name), declared, n=1)
        hint = (
            f" (did you mean '{close[0]}'?)" if close else f"; it declares: {', '.join(declared)}"
        )
        issues.append(
            DefinitionIssue(
                f"input '{name}' is not declared by the workflow{hint}",
                field=f"inputs.{name}",
                code="unknown_input",
            )
        )
    return issues


def override_problems(
    compiled: CompiledWorkflow,
    overrides: dict[str, dict[str, Any]],
    *,
    registry: HandlerRegistry | None = None,
    context: Mapping[str, Any] | None = None,
) -> list[DefinitionIssue]:
    """Every problem of trigger ``overrides``, none left out: a node the definition does not
    have, a routing rule's node, a patch that is no object, and, given ``registry``, a
    patched config that does not fit its handler's schema (``context``: the validation
    context definitions are checked with). The caller bounds the list it answers with."""
    issues = []
    for node_id, patch in overrides.items():
        unsafe = _unsafe({node_id: patch}, "overrides")
        if unsafe is not None:
            issues.append(unsafe)
        elif node_id not in compiled.plan.index:
            issues.append(
                DefinitionIssue(
                    "override names an unknown node: "
                    + no_such_node(None, node_id, compiled.plan.index),
                    node=node_id,
                    field="overrides",
                    code="unknown_node",
                )
            )
        elif compiled.plan.routing and compiled.plan.routing[compiled.plan.index[node_id]]:
            # A rule's condition, teams and approvers are the definition's: an override would
            # let whoever starts a run lift an approval or silence an escalation.
            issues.append(
                DefinitionIssue(
                    f"node '{node_id}' is a routing rule of the definition: it cannot be "
                    "overridden",
                    node=node_id,
                    field="overrides",
                    code="routing_override",
                )
            )
        elif not isinstance(patch, dict):
            issues.append(
                DefinitionIssue(
                    "override must be an object of config keys",
                    node=node_id,
                    field="overrides",
                    code="invalid_override",
                )
            )
        else:
            for where, message in template_errors(patch, "config"):
                issues.append(
                    DefinitionIssue(message, node=node_id, field=where, code="template_syntax")
                )
            if registry is not None and patch:
                issues.extend(_config_issues(compiled, node_id, patch, registry, context))
    return issues


def _config_issues(
    compiled: CompiledWorkflow,
    node_id: str,
    patch: dict[str, Any],
    registry: HandlerRegistry,
    context: Mapping[str, Any] | None,
) -> list[DefinitionIssue]:
    node = compiled.plan.nodes[compiled.plan.index[node_id]]
    try:
        handler = registry.get(node.handler)
    except HandlerNotFound:
        return []  # the definition was checked with this handler; the run reports it gone
    issues = _template_issues(compiled, node_id, patch, handler.raw_keys)
    # Who decides on a gate, and whether it waits for anyone, are the definition's: whoever
    # starts a run must not lift an approval its author required.
    fixed = sorted(handler.fixed_keys & set(patch))
    issues.extend(
        DefinitionIssue(
            f"override may not change '{key}' of a {handler.name} node: it is fixed by the "
            "definition",
            node=node_id,
            field=f"config.{key}",
            code="fixed_override",
        )
        for key in fixed
    )
    inner = patch.get("handler")
    if handler.name == "map" and isinstance(inner, str) and not is_template(inner):
        issues.extend(_map_item_issues(node_id, inner, registry))
    if handler.config_model is None:
        return issues
    # A fixed key is refused whatever its value: one answer per field, not two.
    merged = {**node.config, **{k: v for k, v in patch.items() if k not in fixed}}
    return issues + [
        DefinitionIssue(
            f"override: {describe_pydantic_error(error)}",
            node=node_id,
            field=format_path(("config", *error["loc"])),
            code=f"config.{error['type']}",
        )
        for error in config_errors(handler.config_model, merged, handler.raw_keys, context)
    ]


def _map_item_issues(node_id: str, name: str, registry: HandlerRegistry) -> list[DefinitionIssue]:
    """An override of a map's per-item handler is checked as the definition's was."""
    try:
        problem = map_item_problem(name, registry.get(name))
        code = "map_item_handler"
    except HandlerNotFound:
        problem, code = f"unknown handler '{name}'", "unknown_handler"
    if problem is None:
        return []
    return [DefinitionIssue(f"override: {problem}", node_id, "config.handler", code=code)]


def _template_issues(
    compiled: CompiledWorkflow, node_id: str, patch: dict[str, Any], raw_keys: frozenset[str]
) -> list[DefinitionIssue]:
    """An override's templates may read only what the node reads in the definition (its
    dependencies and the nodes its own templates name): no other output reaches it."""
    i = compiled.plan.index[node_id]
    readable = set(compiled.context_nodes[i])
    issues = []
    for path, source in config_templates(patch, ("config",), raw_keys):
        info = template_info(source)
        field = format_path(path)
        if info.error is not None:
            continue  # reported by override_problems (template_errors)
        named = set(info.names - RESERVED_NAMES)  # input, secrets, execution: always there
        if "nodes" in info.names:
            named |= info.node_keys
        for name in sorted(named - readable):
            if name in compiled.plan.index:
                message = (
                    f"override reads node '{name}', which '{node_id}' does not read (only its "
                    "dependencies and the nodes its definition's templates name reach it)"
                )
            else:
                message = f"override references unknown name '{name}'"
            issues.append(DefinitionIssue(message, node_id, field, code="template_name"))
    return issues


def check_from_node(compiled: CompiledWorkflow, execution_id: str, node_id: str | None) -> None:
    """Refuse a retry's ``from_node`` the execution's definition does not have: a request
    field naming nothing there (422 in the API, exit 2 in the CLI, as an override's)."""
    if node_id is not None and node_id not in compiled.plan.index:
        issue = DefinitionIssue(
            no_such_node(execution_id, node_id, compiled.plan.index),
            node=node_id,
            field="from_node",
            code="unknown_node",
        )
        raise DefinitionError([issue], source=FROM_NODE, request=True)
