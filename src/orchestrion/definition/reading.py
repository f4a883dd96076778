"""Read a workflow definition's source into data: a file, a YAML or JSON text, or a dict.

YAML without anchors, tags, merge or duplicate keys is read straight from the parser's events
(``yaml_stream.py``); any other YAML is composed with the line of every key (so an issue can
name its line), aliases are bounded, and tags other than the plain ones are refused. Both
formats find the line of an issue, when one needs it, by composing the text again. Size
limits are checked before the work they would cost.
"""

from __future__ import annotations

import contextlib
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from orchestrion import safe_data
from orchestrion.definition.limits import LIMIT_CODE, DefinitionLimits, text_size_issue
from orchestrion.definition.yaml_stream import NOT_PLAIN, plain_data
from orchestrion.errors import DefinitionIssue
from orchestrion.yaml_aliases import ALIAS_EXPANSION, RECURSIVE_ALIAS, check_aliases

if TYPE_CHECKING:
    import yaml

__all__ = ["Document", "LineMap", "SourceFormat", "dump", "read", "unsafe_issue"]

SourceFormat = Literal["yaml", "json", "python"]
LineMap = dict[tuple[str, ...], int]

_SUFFIXES: dict[str, SourceFormat] = {".yaml": "yaml", ".yml": "yaml", ".json": "json"}
_FORMATS: dict[str, SourceFormat] = {"yaml": "yaml", "yml": "yaml", "json": "json"}
_MAX_PATH_LENGTH = 4096
_ALIAS_CEILING = 64 * 1024 * 1024  # trusted files have no max_bytes; aliases stay bounded
_MAX_INT_TEXT = 2 * safe_data.MAX_INT_DIGITS  # room for `_` separators; the value is checked


@dataclass(slots=True)
class Document:
    """A source as read: its format, text, data and line map, or the issues that stopped it."""

    format: SourceFormat
    text: str | None
    data: Any = None
    path: Path | None = None
    lines: LineMap | None = None
    issues: list[DefinitionIssue] = field(default_factory=list)
    alias_budget: int = _ALIAS_CEILING
    checked: bool = False  # ``data`` already passed ``safe_data.check``

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


def read(
    source: str | Path | dict[str, Any], fmt: str | None, limits: DefinitionLimits
) -> Document:
    wanted: SourceFormat | None = None
    if fmt is not None:
        if fmt.lower() not in _FORMATS:
            raise ValueError(f"unknown definition format {fmt!r}: use 'yaml' or 'json'")
        wanted = _FORMATS[fmt.lower()]
    if isinstance(source, dict):
        return Document("python", None, source)
    path = _as_path(source)
    if path is None:
        assert isinstance(source, str)
        too_large = text_size_issue(source, limits)
        if too_large is not None:
            return Document(wanted or "yaml", None, issues=[too_large])
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
        return Document("yaml", None, path=path, issues=[too_large])
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


def _failed(path: Path, message: str, code: str) -> Document:
    return Document("yaml", None, path=path, issues=[DefinitionIssue(message, code=code)])


def _parse(
    text: str, wanted: SourceFormat | None, path: Path | None, limits: DefinitionLimits
) -> Document:
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


def _parse_json(text: str, path: Path | None) -> Document:
    duplicates: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in items:
            if key in result:
                duplicates.append(key)
            result[key] = value
        return result

    document = Document("json", text, path=path, checked=True)
    try:
        document.data = safe_data.loads(text, object_pairs_hook=pairs, max_depth=None)
    except json.JSONDecodeError as exc:
        message = f"invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        document.issues.append(DefinitionIssue(message, line=exc.lineno, code="json_syntax"))
        return document
    except safe_data.UnsafeData as exc:
        document.issues.append(unsafe_issue(exc, document))
        return document
    for key in dict.fromkeys(duplicates):
        document.issues.append(DefinitionIssue(f"duplicate key '{key}'", code="duplicate_key"))
    return document


def _parse_yaml(text: str, path: Path | None, budget: int) -> Document:
    import yaml  # here: a definition given as a dict needs no YAML

    data = plain_data(text, _strict_loader(), _MAX_INT_TEXT)
    if data is not NOT_PLAIN:
        # Lines are composed again only if an issue needs one, as for JSON.
        return Document("yaml", text, data=data, path=path, alias_budget=budget, checked=True)
    document = Document("yaml", text, path=path, lines={}, alias_budget=budget)
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


def unsafe_issue(exc: safe_data.UnsafeData, document: Document) -> DefinitionIssue:
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


def dump(data: dict[str, Any]) -> str:
    # No indent: only the compact form runs in json's C encoder (20x faster on big graphs).
    return json.dumps(data, default=str, ensure_ascii=False)
