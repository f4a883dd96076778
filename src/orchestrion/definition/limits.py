"""Size limits of a workflow definition, checked before the expensive work.

A definition is parsed, converted, modelled and checked in time that grows with its size, and
every later step (storing, compiling, scheduling, re-running) pays again. ``DefinitionLimits``
bounds that size: the text (``max_bytes``), the number of nodes, the dependencies one node may
list, how deeply values may nest, and how many problems one answer lists. The governance
policy's ``definitions`` section sets them; these defaults apply without one.

The checks here are linear and cheap, and run in this order: the text's size before it is
parsed, the nesting depth of the parsed data before it is converted, the node and dependency
counts before the model validates it. A stored definition is checked again (nodes and
dependencies) before it is compiled for a run, so a definition stored under looser limits
cannot be re-run past the current ones.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from typing import Any

from orchestrion.errors import DefinitionError, DefinitionIssue

__all__ = [
    "DEFAULT_LIMITS",
    "LIMIT_CODE",
    "DefinitionLimits",
    "check_depth",
    "check_shape",
    "check_stored",
    "text_size_issue",
    "truncated",
]

LIMIT_CODE = "limit_exceeded"


@dataclass(frozen=True, slots=True)
class DefinitionLimits:
    """How large a workflow definition may be (see the module docstring)."""

    max_bytes: int = 1024 * 1024
    max_nodes: int = 10_000
    max_dependencies_per_node: int = 1_000
    max_nesting_depth: int = 64
    max_problems: int = 100

    def for_own_files(self) -> DefinitionLimits:
        """These limits without the size bounds (bytes, nodes, dependencies per node)."""
        return replace(
            self,
            max_bytes=sys.maxsize,
            max_nodes=sys.maxsize,
            max_dependencies_per_node=sys.maxsize,
        )


DEFAULT_LIMITS = DefinitionLimits()


def _limit_issue(
    message: str, node: str | None = None, field: str | None = None
) -> DefinitionIssue:
    return DefinitionIssue(message, node=node, field=field, code=LIMIT_CODE)


def text_size_issue(text: str, limits: DefinitionLimits) -> DefinitionIssue | None:
    """The issue of a definition text larger than ``max_bytes`` (UTF-8), else None."""
    limit = limits.max_bytes
    # A character is at most 4 bytes: most texts are decided without encoding them.
    if len(text) <= limit // 4:
        return None
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    if size <= limit:
        return None
    return _limit_issue(
        f"the definition is {size} bytes, more than the limit of {limit} bytes "
        "(definitions.max_bytes)"
    )


def check_depth(data: Any, limits: DefinitionLimits) -> DefinitionIssue | None:
    """The issue of values nested deeper than ``max_nesting_depth``, naming where, else None.

    Iterative, so that a deep document cannot exhaust the interpreter's stack here.
    """
    limit = limits.max_nesting_depth
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(data, 1, ())]
    # A value shared by YAML aliases is walked again only when reached deeper than before.
    reached: dict[int, int] = {}
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, Mapping):
            children: Iterator[tuple[str | int, Any]] = iter(value.items())
        elif isinstance(value, list | tuple):
            children = enumerate(value)
        else:
            continue
        if reached.get(id(value), 0) >= depth:
            continue
        reached[id(value)] = depth
        if depth > limit:
            where = _format(path)
            return _limit_issue(
                f"values nest more than {limit} levels deep at '{where}' "
                "(definitions.max_nesting_depth)",
                field=where or None,
            )
        # Keep only a short path: a deep document would make each copy long.
        stack.extend(
            (item, depth + 1, (*path, key) if depth <= 8 else path) for key, item in children
        )
    return None


def _format(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def check_shape(
    data: Mapping[str, Any], limits: DefinitionLimits
) -> list[tuple[DefinitionIssue, int | None, tuple[str | int, ...]]]:
    """Issues of a canonical definition dict with too many nodes, or a node with too many
    dependencies: (issue, node index or None, path inside the node)."""
    dag = data.get("dag")
    nodes = dag.get("nodes") if isinstance(dag, Mapping) else None
    if not isinstance(nodes, list):
        return []
    if len(nodes) > limits.max_nodes:
        issue = _limit_issue(
            f"the definition has {len(nodes)} nodes, more than the limit of "
            f"{limits.max_nodes} (definitions.max_nodes)",
            field="dag.nodes",
        )
        return [(issue, None, ("dag", "nodes"))]
    found: list[tuple[DefinitionIssue, int | None, tuple[str | int, ...]]] = []
    for index, node in enumerate(nodes):
        deps = node.get("dependencies") if isinstance(node, Mapping) else None
        if isinstance(deps, list | tuple) and len(deps) > limits.max_dependencies_per_node:
            node_id = node.get("id")
            issue = _limit_issue(
                f"node lists {len(deps)} dependencies, more than the limit of "
                f"{limits.max_dependencies_per_node} (definitions.max_dependencies_per_node)",
                node=node_id if isinstance(node_id, str) else f"#{index + 1}",
                field="dependencies",
            )
            found.append((issue, index, ("dependencies",)))
    return found


def check_stored(spec: Mapping[str, Any], limits: DefinitionLimits, source: str) -> None:
    """Raise ``DefinitionError`` when a stored definition breaks the limits now in force."""
    issues = [issue for issue, _, _ in check_shape(spec, limits)]
    if issues:
        raise DefinitionError(truncated(issues, limits.max_problems), source=source)


def truncated(
    issues: list[DefinitionIssue], max_problems: int, unlisted: int = 0
) -> list[DefinitionIssue]:
    """The first ``max_problems`` issues, plus one that counts the rest (if any);
    ``unlisted``: problems found but already left out of ``issues``."""
    if len(issues) <= max_problems and unlisted == 0:
        return issues
    rest = max(len(issues) - max_problems, 0) + unlisted
    more = DefinitionIssue(
        f"{rest} more problem{'s' if rest != 1 else ''} not listed "
        f"(at most {max_problems} are: definitions.max_problems)",
        code="more_problems",
    )
    return [*issues[:max_problems], more]
