"""Load a workflow definition from a file, a YAML/JSON text or a dict, and validate all of it.

Steps: read -> parse (YAML with line tracking, or JSON) -> detect the dialect and convert to
the canonical dict -> validate the pydantic model -> graph and content checks (validate.py).
Every problem found on the way is collected, located (node, field, line) and raised at once as
one ``DefinitionError``. Field names in issues are those of the source: ``depends_on[1]`` for a
reference-000 file, ``dependencies[1]`` for a canonical one.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import ValidationError

from orchestrion import safe_data
from orchestrion.definition.catalog import HandlerCatalog
from orchestrion.definition.dialects import Conversion, Dialect, SourcePath, convert
from orchestrion.definition.limits import (
    DEFAULT_LIMITS,
    LIMIT_CODE,
    DefinitionLimits,
    check_depth,
    check_shape,
    text_size_issue,
    truncated,
)
from orchestrion.definition.model import DagSpec, NodeSpec, WorkflowSpec
from orchestrion.definition.reads import propagate_classification
from orchestrion.definition.validate import (
    LocatedIssue,
    check_spec_bounded,
    describe_pydantic_error,
    format_path,
    gc_paused,
)
from orchestrion.errors import DefinitionError, DefinitionIssue
from orchestrion.yaml_aliases import ALIAS_EXPANSION, RECURSIVE_ALIAS, check_aliases

if TYPE_CHECKING:
    import yaml

__all__ = ["LIFECYCLE_WARNING", "LoadedDefinition", "SourceFormat", "load_definition"]

SourceFormat = Literal["yaml", "json", "python"]

LIFECYCLE_WARNING = (
    "triggers, routing, error_handling and success_criteria are parsed and stored but not "
    "enforced yet"
)

_SUFFIXES: dict[str, SourceFormat] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_FORMATS: dict[str, SourceFormat] = {"yaml": "yaml", "yml": "yaml", "json": "json"}
_MAX_PATH_LENGTH = 4096
_ALIAS_CEILING = 64 * 1024 * 1024  # trusted files have no max_bytes; aliases stay bounded
_MAX_INT_TEXT = 2 * safe_data.MAX_INT_DIGITS  # room for `_` separators; the value is checked


LineMap = dict[tuple[str, ...], int]


@dataclass(slots=True)
class LoadedDefinition:
    """A validated definition and where it came from."""

    spec: WorkflowSpec
    source_format: SourceFormat
    dialect: Dialect
    source_text: str
    warnings: list[str] = field(default_factory=list)
    path: Path | None = None


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
    document = _read(source, fmt, limits)
    label = str(document.path) if document.path is not None else None
    if not document.issues and document.format != "json":  # JSON is checked as it is parsed
        try:
            safe_data.check(document.data, max_depth=None)  # depth: limits
        except safe_data.UnsafeData as exc:
            document.issues.append(_unsafe_issue(exc, document))
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
    spec, broken = _model(conversion.data, locator, issues)
    # Past max_problems issues are only counted; locating one may parse the text again.
    room = max(limits.max_problems + 1 - len(issues), 0)
    unlisted = 0
    if spec is not None:
        located, unlisted = check_spec_bounded(spec, registry, max_issues=room, context=context)
    else:
        partial = _partial_spec(conversion.data, broken)
        located, unlisted = (
            check_spec_bounded(
                partial, registry, max_issues=room, structure_only=broken, context=context
            )
            if partial
            else ([], 0)
        )
    issues.extend(locator.located(item) for item in located)
    if issues or unlisted or spec is None:
        raise DefinitionError(truncated(_unique(issues), limits.max_problems, unlisted), label)
    spec = propagate_classification(spec)  # readers of classified outputs are classified

    warnings: list[str] = []
    if spec.triggers or spec.routing or spec.error_handling or spec.success_criteria:
        warnings.append(LIFECYCLE_WARNING)
    text = document.text if document.text is not None else _dump(data)
    return LoadedDefinition(
        spec=spec,
        source_format=document.format,
        dialect=conversion.dialect,
        source_text=text,
        warnings=warnings,
        path=document.path,
    )


# --------------------------------------------------------------------------- reading


@dataclass(slots=True)
class _Document:
    format: SourceFormat
    text: str | None
    data: Any = None
    path: Path | None = None
    lines: LineMap | None = None
    issues: list[DefinitionIssue] = field(default_factory=list)
    alias_budget: int = _ALIAS_CEILING

    def line_map(self) -> LineMap:
        """Key path -> line; for JSON built only when an issue needs it (parsing twice)."""
        if self.lines is None:
            self.lines = {}
            if self.text is not None:
                import yaml

                # JSON that YAML cannot read: its issues simply carry no line.
                with contextlib.suppress(yaml.YAMLError):
                    _compose(self.text, self.lines, self.alias_budget)
        return self.lines


def _read(
    source: str | Path | dict[str, Any], fmt: str | None, limits: DefinitionLimits
) -> _Document:
    wanted: SourceFormat | None = None
    if fmt is not None:
        if fmt.lower() not in _FORMATS:
            raise ValueError(f"unknown definition format {fmt!r}: use 'yaml' or 'json'")
        wanted = _FORMATS[fmt.lower()]
    if isinstance(source, dict):
        return _Document("python", None, source)
    path = _as_path(source)
    if path is None:
        assert isinstance(source, str)
        too_large = text_size_issue(source, limits)
        if too_large is not None:
            return _Document(wanted or "yaml", None, issues=[too_large])
        return _parse(source, wanted, None, limits)
    try:
        if path.stat().st_size > limits.max_bytes:
            # Refused before it is read: a huge file costs nothing but this stat.
            return _failed(
                path,
                f"the definition is {path.stat().st_size} bytes, more than the limit of "
                f"{limits.max_bytes} bytes (definitions.max_bytes)",
                "limit_exceeded",
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return _failed(path, f"file not found: {path}", "io")
    except (OSError, UnicodeDecodeError) as exc:
        return _failed(path, f"cannot read {path}: {exc}", "io")
    too_large = text_size_issue(text, limits)
    if too_large is not None:
        return _Document("yaml", None, path=path, issues=[too_large])
    return _parse(text, wanted or _SUFFIXES.get(path.suffix.lower()), path, limits)


def _as_path(source: str | Path) -> Path | None:
    if isinstance(source, Path):
        return source
    if "\n" in source or len(source) > _MAX_PATH_LENGTH or source.lstrip().startswith("{"):
        return None
    candidate = Path(source.strip())
    try:
        if candidate.is_file():
            return candidate
    except OSError:
        return None
    # A missing `flow.yaml` is reported as a missing file; `name: x` is a (short) YAML text.
    if candidate.suffix.lower() in _SUFFIXES and ": " not in source:
        return candidate
    return None


def _failed(path: Path, message: str, code: str) -> _Document:
    return _Document("yaml", None, path=path, issues=[DefinitionIssue(message, code=code)])


def _parse(
    text: str, wanted: SourceFormat | None, path: Path | None, limits: DefinitionLimits
) -> _Document:
    budget = min(limits.max_bytes, _ALIAS_CEILING)
    if wanted is not None:
        return _parse_json(text, path) if wanted == "json" else _parse_yaml(text, path, budget)
    if not text.lstrip().startswith(("{", "[")):
        return _parse_yaml(text, path, budget)
    document = _parse_json(text, path)
    if document.issues:
        # `{name: x, dag: ...}` is a YAML flow mapping, not JSON: give YAML its chance.
        fallback = _parse_yaml(text, path, budget)
        if not fallback.issues:
            return fallback
    return document


def _parse_json(text: str, path: Path | None) -> _Document:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    document = _Document("json", text, path=path)
    try:
        document.data = safe_data.loads(text, object_pairs_hook=pairs, max_depth=None)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        document.issues.append(DefinitionIssue(message, line=exc.lineno, code="json_syntax"))
        return document
    except safe_data.UnsafeData as exc:
        document.issues.append(_unsafe_issue(exc, document))
        return document
    for key in dict.fromkeys(duplicates):
        document.issues.append(DefinitionIssue(f"duplicate key '{key}'", code="duplicate_key"))
    return document


def _parse_yaml(text: str, path: Path | None, budget: int) -> _Document:
    import yaml  # here: a definition given as a dict needs no YAML

    document = _Document("yaml", text, path=path, lines={}, alias_budget=budget)
    assert document.lines is not None
    try:
        document.data, duplicates = _compose(text, document.lines, budget)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        where = f" (line {line}, column {mark.column + 1})" if mark is not None else ""
        problem = exc.problem or exc.context or "malformed document"
        code = "yaml_syntax"
        if problem.startswith(RECURSIVE_ALIAS):
            code = "recursive_alias"
        elif problem.startswith(ALIAS_EXPANSION):
            code = LIMIT_CODE
        document.issues.append(
            DefinitionIssue(f"invalid YAML: {problem}{where}", line=line, code=code)
        )
        return document
    except yaml.YAMLError as exc:
        document.issues.append(DefinitionIssue(f"invalid YAML: {exc}", code="yaml_syntax"))
        return document
    except RecursionError:  # the pure-Python parser, without libyaml's own depth limit
        message = "invalid YAML: nested too deeply to parse"
        document.issues.append(DefinitionIssue(message, code="too_deep"))
        return document
    for key, line in duplicates:
        document.issues.append(
            DefinitionIssue(f"duplicate key '{key}'", line=line, code="duplicate_key")
        )
    return document


def _compose(text: str, lines: LineMap, budget: int) -> tuple[Any, list[tuple[str, int]]]:
    """Parse YAML into data, filling ``lines`` (key path -> 1-based line); list duplicates.

    Aliases are checked before any value is built: a recursive one, or aliases that expand
    the document past ``budget`` bytes, raise ``yaml.MarkedYAMLError``.
    """

    loader = _strict_loader()(text)
    try:
        root = loader.get_single_node()
        duplicates: list[tuple[str, int]] = []
        data = None
        if root is not None:
            _index_lines(root, lines, duplicates, budget)
            data = loader.construct_document(root)
    finally:
        loader.dispose()
    return data, duplicates


@functools.cache
def _strict_loader() -> type[yaml.SafeLoader]:
    """The safe loader (libyaml's when built with it) whose value errors name their line."""
    import yaml

    base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    class StrictLoader(base):  # type: ignore[valid-type, misc]
        def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
            # A timestamp like 2020-13-45 or an integer of 5,000 digits matches YAML's
            # pattern, then fails to convert with a bare ValueError: say where it is.
            if node.tag == "tag:yaml.org,2002:int" and len(str(node.value)) > _MAX_INT_TEXT:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"an integer of more than {safe_data.MAX_INT_DIGITS} digits",
                    node.start_mark,
                )
            try:
                return super().construct_object(node, deep)
            except (ValueError, OverflowError) as exc:
                raise yaml.constructor.ConstructorError(
                    None, None, f"cannot read the value {_preview(node)}: {exc}", node.start_mark
                ) from None

    return StrictLoader


def _preview(node: yaml.Node) -> str:
    text = str(node.value) if isinstance(node.value, str) else node.tag
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _unsafe_issue(exc: safe_data.UnsafeData, document: _Document) -> DefinitionIssue:
    line = exc.line
    if line is None and exc.path and document.text is not None:
        line = document.line_map().get(tuple(str(part) for part in exc.path))
    return DefinitionIssue(f"{exc.reason} {exc.where}", line=line, code=exc.code)


def _index_lines(
    root: yaml.Node, lines: LineMap, duplicates: list[tuple[str, int]], budget: int
) -> None:
    """Walk the node tree once (an aliased node is not walked again) and record lines.

    Also refuses recursive aliases and alias bombs ("billion laughs"): a few aliased nodes
    that expand to a document larger than ``budget`` bytes (``definitions.max_bytes``),
    which every later step (validation, templates, storage, re-runs) would expand.
    """
    import yaml  # here: a definition given as a dict needs no YAML

    stack: list[tuple[yaml.Node, tuple[str, ...]]] = [(root, ())]
    walked: set[int] = set()
    shared = False
    while stack:
        node, path = stack.pop()
        if id(node) in walked:
            shared = True
            continue  # an alias: its lines are those of its anchor
        walked.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key_node, value_node in node.value:
                if not isinstance(key_node, yaml.ScalarNode):
                    shared = True  # a complex key: it may hold aliases too
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen and key != "<<":
                    duplicates.append((key, line))
                seen.add(key)
                lines[(*path, key)] = line
                stack.append((value_node, (*path, key)))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                lines[(*path, str(i))] = item.start_mark.line + 1
                stack.append((item, (*path, str(i))))
    if shared:  # only aliases make a node reachable twice
        check_aliases(root, budget, "the definition", "definitions.max_bytes")


def _dump(data: dict[str, Any]) -> str:
    # No indent: only the compact form runs in json's C encoder (20x faster on big graphs).
    return json.dumps(data, default=str, ensure_ascii=False)


# --------------------------------------------------------------------------- locating


class _Locator:
    """Turns canonical locations into source field names and line numbers."""

    def __init__(self, conversion: Conversion, document: _Document) -> None:
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
