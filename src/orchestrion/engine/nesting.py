"""How deep sub-workflows nest and how wide they spread: the limits on a tree of children.

A ``workflow`` node starts a child execution, which may itself start children, its own
workflow included (recursion with a base case, a ``when`` on the node, is legitimate). Every
child carries two labels the engine sets as it makes it: its level under the root execution
it descends from (``child_depth``: 1 for a root's child), and its share of that level's width
(``child_width``). The root's own children each have a share of 1 (a root may map over many
items, each a child); below them a child's share is its parent's times the number of nodes
of the parent's workflow that start children (``workflow`` nodes, and maps of them) and,
for a map's item, the map's number of items: a workflow calling itself twice doubles it
every level. A child that would be deeper than ``max_child_depth``
(``ORCHESTRION_MAX_CHILD_DEPTH``) or have a share above ``max_child_width``
(``ORCHESTRION_MAX_CHILD_WIDTH``) is not made: its node fails permanently with an error
naming the limit and its setting, and nothing is written. Each of a root's children thus
leads to at most depth x width executions, wherever each level is driven: the labels
travel with the rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from orchestrion.errors import ErrorCategory, PermanentNodeError

if TYPE_CHECKING:
    from orchestrion.definition.model import NodeSpec
    from orchestrion.settings import Settings
    from orchestrion.store.base import ExecutionRecord

__all__ = ["DEPTH", "DEPTH_CEILING", "WIDTH", "child_labels"]

DEPTH = "child_depth"
WIDTH = "child_width"
_STARTERS = frozenset({"workflow"})

DEPTH_CEILING = 32
"""The most ``max_child_depth`` may be set to (the settings say so too): walks down and up a
lineage (cancels, decisions, what classified data a parent's children hold) go this deep."""


def child_labels(
    parent: ExecutionRecord,
    nodes: Iterable[NodeSpec],
    canonical: Callable[[str], str],
    settings: Settings,
    siblings: int = 1,
) -> dict[str, int]:
    """The labels of a child ``parent`` starts; ``PermanentNodeError`` when it would break a
    limit. ``nodes``: those of the parent's workflow; ``canonical``: a handler's own name;
    ``siblings``: the children its node starts with this one (a map's items)."""
    root = parent.parent_execution_id is None
    depth = 1 if root else _label(parent, DEPTH) + 1
    if depth > settings.max_child_depth:
        raise PermanentNodeError(
            f"this child execution would be nested {depth} levels deep, more than the"
            f" {settings.max_child_depth} that ORCHESTRION_MAX_CHILD_DEPTH allows: a workflow"
            " that starts itself needs a base case (a `when` on its workflow node)",
            category=ErrorCategory.CONFIG,
        )
    width = 1
    if not root:
        starters = sum(1 for node in nodes if _starts_children(node, canonical))
        width = _label(parent, WIDTH) * max(starters, 1) * max(siblings, 1)
    if width > settings.max_child_width:
        raise PermanentNodeError(
            f"this child execution's share of level {depth} of its root's sub-workflows would"
            f" be {width} executions, more than the {settings.max_child_width} that"
            " ORCHESTRION_MAX_CHILD_WIDTH allows (below the root's own children, each level"
            " multiplies by the child-starting nodes of the one above, and a map's items)",
            category=ErrorCategory.CONFIG,
        )
    return {DEPTH: depth, WIDTH: width}


def _label(record: ExecutionRecord, name: str) -> int:
    value = record.labels.get(name) if isinstance(record.labels, dict) else None
    return value if isinstance(value, int) and value >= 1 else 1


def _starts_children(node: NodeSpec, canonical: Callable[[str], str]) -> bool:
    try:
        handler = canonical(node.handler)
        if handler == "map":  # a map of sub-workflows
            inner: Any = node.config.get("handler") if isinstance(node.config, dict) else None
            handler = canonical(inner) if isinstance(inner, str) else handler
    except Exception:  # a handler this registry does not know starts nothing here
        return False
    return handler in _STARTERS
