"""Load a workflow definition from a file, a YAML/JSON text or a dict, and validate all of it.

Steps: read -> parse (YAML with line tracking, or JSON: reading.py) -> detect the dialect and
convert to the canonical dict -> validate the pydantic model -> graph and content checks
(validate.py).
Every problem found on the way is collected, located (node, field, line) and raised at once as
one ``DefinitionError``. Field names in issues are those of the source: ``depends_on[1]`` for a
reference-000 file, ``dependencies[1]`` for a canonical one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from orchestrion import safe_data
from orchestrion.definition.catalog import HandlerCatalog
from orchestrion.definition.dialects import Conversion, Dialect, SourcePath, convert
from orchestrion.definition.limits import (
    DEFAULT_LIMITS,
    DefinitionLimits,
    check_depth,
    check_shape,
    truncated,
)
from orchestrion.definition.model import DagSpec, NodeSpec, WorkflowSpec
from orchestrion.definition.reading import Document, SourceFormat, dump, read, unsafe_issue
from orchestrion.definition.reads import propagate_classification
from orchestrion.definition.routing import routing_issues
from orchestrion.definition.triggers import trigger_issues, unenforced_triggers
from orchestrion.definition.validate import (
    LocatedIssue,
    check_spec_bounded,
    describe_pydantic_error,
    format_path,
    gc_paused,
)
from orchestrion.errors import DefinitionError, DefinitionIssue

if TYPE_CHECKING:
    pass

__all__ = ["LIFECYCLE_WARNING", "LoadedDefinition", "SourceFormat", "load_definition"]


LIFECYCLE_WARNING = (
    "triggers of type 'schedule' are parsed and stored but not enforced yet (write type: scheduled)"
)


@dataclass(slots=True)
class LoadedDefinition:
    """A validated definition and where it came from."""

    spec: WorkflowSpec
    source_format: SourceFormat
    dialect: Dialect
    source_text: str
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None
    content_hash: str | None = None  # of the spec, once worked out (engine/definitions.py)


def load_definition(
    source: str | Path | dict[str, Any],
    *,
    fmt: str | None = None,
    registry: HandlerCatalog,
    context: Mapping[str, Any] | None = None,
    limits: DefinitionLimits = DEFAULT_LIMITS,
) -> LoadedDefinition:
    """Load, convert and validate a definition; raise ``DefinitionError`` with every issue.

    ``source`` is a file path (``Path``, or a one-line ``str`` naming a file), a YAML or
    JSON text, or an already parsed dict. ``fmt`` ("yaml" or "json") overrides detection.
    ``registry`` resolves handler names (``orchestrion.load_definition`` defaults it to the
    process-wide handler registry: ``handlers/loading.py``). ``context`` is
    the validation context of handler configs (see ``check_spec``). ``limits`` bounds the
    definition's size (checked before the work it would cost) and the problems listed.
    """
    with gc_paused():
        return _load(source, fmt, registry, context, limits)


def _load(
    source: str | Path | dict[str, Any],
    fmt: str | None,
    registry: HandlerCatalog,
    context: Mapping[str, Any] | None = None,
    limits: DefinitionLimits = DEFAULT_LIMITS,
) -> LoadedDefinition:
    document = read(source, fmt, limits)
    label = str(document.path) if document.path is not None else None
    if not document.issues and not document.checked:  # JSON, plain YAML: checked as parsed
        try:
            safe_data.check(document.data, max_depth=None)  # depth: limits
        except safe_data.UnsafeData as exc:
            document.issues.append(unsafe_issue(exc, document))
    if document.issues:
        raise DefinitionError(truncated(document.issues, limits.max_problems), source=label)
    data = document.data
    if data is None:
        raise DefinitionError([DefinitionIssue("the definition is empty", code="empty")], label)
    if not isinstance(data, dict):
        kind = type(data).__name__
        issue = DefinitionIssue(
            f"a workflow definition must be a mapping at the top level, got {kind}",
            line=1 if document.text is not None else None,
            code="not_a_mapping",
        )
        raise DefinitionError([issue], label)
    too_deep = check_depth(data, limits)
    if too_deep is not None:
        raise DefinitionError([too_deep], label)

    conversion = convert(data)
    locator = _Locator(conversion, document)
    issues = [locator.at(issue, path) for issue, path in conversion.issues]
    if not conversion.recognised:
        raise DefinitionError(issues, label)  # unknown format: nothing else to check
    too_large = check_shape(conversion.data, limits)
    if too_large:
        # Too many nodes: no line to show, and finding lines would parse the text again.
        located_limits = [
            issue if index is None else locator.canonical(issue, index, path)
            for issue, index, path in too_large
        ]
        raise DefinitionError(truncated(located_limits, limits.max_problems), label)
    canonical = _handler_compensations(conversion.data, registry)
    spec, broken = _model(canonical, locator, issues)
    if spec is not None and spec.triggers:
        from orchestrion.definition.schedules import schedule_issues  # here: few have triggers

        for issue, path in schedule_issues(spec.triggers, spec.inputs):
            issues.append(locator.canonical(issue, None, path))
    # Past max_problems issues are only counted; locating one may parse the text again.
    room = max(limits.max_problems + 1 - len(issues), 0)
    unlisted = 0
    if spec is not None:
        located, unlisted = check_spec_bounded(spec, registry, max_issues=room, context=context)
    else:
        partial = _partial_spec(canonical, broken)
        located, unlisted = (
            check_spec_bounded(
                partial, registry, max_issues=room, structure_only=broken, context=context
            )
            if partial
            else ([], 0)
        )
    issues.extend(locator.located(item) for item in located)
    if spec is not None:
        issues.extend(
            locator.canonical(issue, None, path)
            for issue, path in trigger_issues(spec.triggers, spec.name)
        )
        found = routing_issues(spec)
        if spec.error_handling:
            from orchestrion.definition.error_rules import error_rule_issues  # few have rules

            found += error_rule_issues(spec)
        issues.extend(locator.canonical(issue, None, path) for issue, path in found)
    if issues or unlisted or spec is None:
        raise DefinitionError(truncated(_unique(issues), limits.max_problems, unlisted), label)
    spec = propagate_classification(spec)  # readers of classified outputs are classified

    warnings: list[str] = []
    if unenforced_triggers(spec.triggers):
        warnings.append(LIFECYCLE_WARNING)
    text = document.text if document.text is not None else dump(data)
    return LoadedDefinition(
        spec=spec,
        source_format=document.format,
        dialect=conversion.dialect,
        source_text=text,
        warnings=warnings,
        path=document.path,
    )


# --------------------------------------------------------------------------- locating


class _Locator:
    """Turns canonical locations into source field names and line numbers."""

    def __init__(self, conversion: Conversion, document: Document) -> None:
        self.conversion = conversion
        self.document = document

    def line(self, path: SourcePath) -> int | None:
        if self.document.text is None:
            return None
        lines = self.document.line_map()
        key = tuple(str(part) for part in path)
        for cut in range(len(key), 0, -1):
            line = lines.get(key[:cut])
            if line is not None:
                return line
        return None

    def at(self, issue: DefinitionIssue, path: SourcePath) -> DefinitionIssue:
        return replace(issue, line=self.line(path)) if path or issue.line is None else issue

    def canonical(
        self,
        issue: DefinitionIssue,
        index: int | None,
        path: tuple[str | int, ...],
    ) -> DefinitionIssue:
        """Locate an issue found at ``path`` inside node ``index`` (or the workflow)."""
        conversion = self.conversion
        if index is None:
            source = conversion.source_path(path)
            field_name = format_path(source) or None
        else:
            source = conversion.source_path(("dag", "nodes", index, *path))
            prefix = conversion.node_source_prefix(index)
            inside = source[len(prefix) :] if source[: len(prefix)] == prefix else source
            field_name = format_path(inside) or None
        return replace(issue, field=field_name, line=self.line(source))

    def located(self, item: LocatedIssue) -> DefinitionIssue:
        issue = self.canonical(item.issue, item.index, item.path)
        if item.related and self.document.text is not None:
            lines = [
                self.line(self.conversion.source_path(("dag", "nodes", i))) for i in item.related
            ]
            known = [str(line) for line in lines if line is not None]
            if known and issue.line is not None:
                issue = replace(
                    issue, message=f"{issue.message} (lines {known[0]} and {issue.line})"
                )
        return issue


# --------------------------------------------------------------------------- model


def _handler_compensations(data: dict[str, Any], registry: HandlerCatalog) -> dict[str, Any]:
    """``compensate: <name>`` with a handler's name is that handler (``compensate: noop`` is
    ``{handler: noop}``); any other name stays the model's shorthand for a python function.
    A copy: the caller's dict is left as given."""
    dag = data.get("dag")
    nodes = dag.get("nodes") if isinstance(dag, dict) else None
    if not isinstance(dag, dict) or not isinstance(nodes, list):
        return data

    def names_handler(node: Any) -> bool:
        if not isinstance(node, dict):
            return False
        name = node.get("compensate")
        return isinstance(name, str) and name in registry

    if not any(names_handler(node) for node in nodes):
        return data
    rewritten = [
        {**node, "compensate": {"handler": node["compensate"]}} if names_handler(node) else node
        for node in nodes
    ]
    return {**data, "dag": {**dag, "nodes": rewritten}}


def _model(
    data: dict[str, Any], locator: _Locator, issues: list[DefinitionIssue]
) -> tuple[WorkflowSpec | None, set[int]]:
    """Validate the canonical dict; append located issues; return the spec or the bad nodes."""
    try:
        return WorkflowSpec.model_validate(data), set()
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
    raw_nodes = _raw_nodes(data)
    broken: set[int] = set()
    for error in errors:
        loc = tuple(error["loc"])
        if error["type"] == "too_short" and loc == ("dag", "nodes") and raw_nodes:
            continue  # pydantic counts only the nodes that validated: the real errors follow
        message = describe_pydantic_error(error)
        if error["type"] == "missing":
            # Name the key as the source spells it: `type` in reference 000, not `handler`.
            written = locator.conversion.source_path(loc)
            if written and isinstance(written[-1], str):
                message = f"missing required key '{written[-1]}'"
        if len(loc) >= 3 and loc[:2] == ("dag", "nodes") and isinstance(loc[2], int):
            index = loc[2]
            broken.add(index)
            raw = raw_nodes[index] if raw_nodes is not None and index < len(raw_nodes) else None
            node_id = raw.get("id") if isinstance(raw, dict) else None
            issue = DefinitionIssue(
                message,
                node=node_id if isinstance(node_id, str) else None,
                code=error["type"],
            )
            issues.append(locator.canonical(issue, index, loc[3:]))
        else:
            issues.append(
                locator.canonical(DefinitionIssue(message, code=error["type"]), None, loc)
            )
    return None, broken


def _raw_nodes(data: dict[str, Any]) -> list[Any] | None:
    dag = data.get("dag")
    nodes = dag.get("nodes") if isinstance(dag, dict) else None
    return nodes if isinstance(nodes, list) else None


def _partial_spec(data: dict[str, Any], broken: set[int]) -> WorkflowSpec | None:
    """A stand-in spec so graph checks still run when some nodes failed the model.

    Nodes that failed keep only their id and dependencies (structure) so that cycles, unknown
    dependencies and references to them are still found; their content is not checked again.
    """
    raw_nodes = _raw_nodes(data)
    if not raw_nodes:
        return None
    nodes: list[NodeSpec] = []
    for i, raw in enumerate(raw_nodes):
        if i not in broken:
            try:
                nodes.append(NodeSpec.model_validate(raw))
                continue
            except ValidationError:
                pass
        nodes.append(_skeleton(raw, i))
    return WorkflowSpec.model_construct(
        name="partial", dag=DagSpec.model_construct(nodes=tuple(nodes))
    )


def _skeleton(raw: Any, index: int) -> NodeSpec:
    raw = raw if isinstance(raw, dict) else {}
    node_id = raw.get("id")
    deps = raw.get("dependencies")
    dependencies = (
        tuple(str(d) for d in deps if isinstance(d, str)) if isinstance(deps, list) else ()
    )
    return NodeSpec.model_construct(
        id=node_id if isinstance(node_id, str) else f"#{index + 1}",
        handler="?",
        dependencies=dependencies,
        config={},
        when=None,
        compensate=None,
    )


def _unique(issues: list[DefinitionIssue]) -> list[DefinitionIssue]:
    return list(dict.fromkeys(issues))
