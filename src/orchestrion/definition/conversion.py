"""A definition converted to the canonical dict, and the way back to where each value was
written in its source (``dialects.py`` detects the format and converts).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from orchestrion.errors import DefinitionIssue

__all__ = ["Conversion", "Dialect", "PathPart", "SourcePath", "attr", "task_id_of", "unknown_keys"]

Dialect = Literal["canonical", "swarmlite", "agent_platform"]
PathPart = str | int
SourcePath = tuple[PathPart, ...]

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(slots=True)
class Conversion:
    """A definition converted to the canonical dict, with the way back to its source paths."""

    dialect: Dialect
    data: dict[str, Any]
    issues: list[tuple[DefinitionIssue, SourcePath]] = field(default_factory=list)
    node_prefix: SourcePath = ("dag", "nodes")
    # canonical node field -> where it is written inside one source node
    node_fields: dict[str, SourcePath] = field(default_factory=dict)
    # (node index, canonical path inside the node) -> absolute source path
    node_extras: dict[tuple[int, SourcePath], SourcePath] = field(default_factory=dict)
    # canonical workflow-level path prefix -> absolute source path
    workflow_fields: dict[SourcePath, SourcePath] = field(default_factory=lambda: {(): ()})
    recognised: bool = True  # False: none of the formats; ``issues`` says so

    def source_path(self, canonical: SourcePath) -> SourcePath:
        """Where the value at ``canonical`` (a path in ``data``) was written in the source."""
        if len(canonical) >= 3 and canonical[:2] == ("dag", "nodes"):
            index = canonical[2]
            if isinstance(index, int):
                rest = canonical[3:]
                for cut in range(len(rest), 0, -1):
                    extra = self.node_extras.get((index, rest[:cut]))
                    if extra is not None:
                        return extra + rest[cut:]
                if rest and isinstance(rest[0], str) and rest[0] in self.node_fields:
                    rest = self.node_fields[rest[0]] + rest[1:]
                return (*self.node_prefix, index, *rest)
        for cut in range(len(canonical), -1, -1):
            mapped = self.workflow_fields.get(canonical[:cut])
            if mapped is not None:
                return mapped + canonical[cut:]
        return canonical

    def node_source_prefix(self, index: int) -> SourcePath:
        return (*self.node_prefix, index)

    def issue(
        self,
        message: str,
        path: SourcePath,
        *,
        node: str | None = None,
        field_: str | None = None,
        code: str = "invalid",
    ) -> None:
        self.issues.append((DefinitionIssue(message, node=node, field=field_, code=code), path))


def unknown_keys(
    conversion: Conversion,
    mapping: dict[str, Any],
    allowed: frozenset[str],
    path: SourcePath,
    *,
    node: str | None = None,
    field_prefix: str = "",
) -> None:
    for key in mapping:
        if key not in allowed:
            expected = ", ".join(sorted(allowed))
            conversion.issue(
                f"unknown key '{key}' (expected one of: {expected})",
                (*path, key),
                node=node,
                field_=f"{field_prefix}{key}",
                code="extra_forbidden",
            )


def task_id_of(task: Any, index: int) -> str | None:
    if isinstance(task, dict) and isinstance(task.get("id"), str):
        return str(task["id"])
    return None


def attr(name: str) -> str:
    return f".{name}" if _IDENTIFIER.match(name) else f"[{name!r}]"
