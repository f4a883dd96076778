"""No arbitrary code through the service: python function names checked against the policy.

``code_issues(spec, registry, allowlist)`` names every python function of a definition that
the allowlist refuses, wherever a definition can name one: a ``python`` node's
``config.function``, a compensation's ``compensate.config.function``, and the per-item config
of a ``map`` over ``python`` (``config.config.function``). The service runs it on every
definition it accepts, whatever the route, and on node overrides of a trigger; the python
handler checks the name again when the node runs, so a definition stored before the policy
changed (or a name that is a template) is refused then.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from typing import Any

from orchestrion.definition.model import WorkflowSpec
from orchestrion.errors import DefinitionIssue, HandlerNotFound, PolicyViolation
from orchestrion.handlers.python import UnresolvableFunction, resolve_function
from orchestrion.handlers.registry import HandlerRegistry
from orchestrion.templates.rendering import is_template

__all__ = ["code_issues", "function_names"]


def _canonical(registry: HandlerRegistry, name: Any) -> str | None:
    if not isinstance(name, str):
        return None
    try:
        return registry.canonical_name(name)
    except HandlerNotFound:
        return None


def function_names(
    handler: Any, config: Mapping[str, Any], path: str, registry: HandlerRegistry
) -> Iterator[tuple[str, Any]]:
    """(field path, function name) of what a handler with ``config`` would call."""
    canonical = _canonical(registry, handler)
    if canonical == "python" and "function" in config:
        yield f"{path}.function", config["function"]
    elif canonical == "map":
        inner = config.get("config")
        inner_python = _canonical(registry, config.get("handler")) == "python"
        if inner_python and isinstance(inner, Mapping) and "function" in inner:
            yield f"{path}.config.function", inner["function"]


def _problem(name: Any, allowlist: Collection[str]) -> str | None:
    if not isinstance(name, str) or is_template(name):
        return None  # a template is checked when the node runs and the name is known
    try:
        resolve_function(name.strip(), allowlist)
    except PolicyViolation as exc:
        return str(exc)
    except UnresolvableFunction:
        return None  # not code the policy must stop; validation reports unknown functions
    return None


def code_issues(
    spec: WorkflowSpec,
    registry: HandlerRegistry,
    allowlist: Collection[str],
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[DefinitionIssue]:
    """Every function name of ``spec`` (with trigger ``overrides``) the allowlist refuses."""
    issues: list[DefinitionIssue] = []
    for node in spec.dag.nodes:
        config = {**node.config, **(overrides or {}).get(node.id, {})}
        targets = list(function_names(node.handler, config, "config", registry))
        if node.compensate is not None:
            targets += function_names(
                node.compensate.handler, node.compensate.config, "compensate.config", registry
            )
        for field, name in targets:
            problem = _problem(name, allowlist)
            if problem is not None:
                issues.append(DefinitionIssue(problem, node=node.id, field=field, code="policy"))
    return issues
