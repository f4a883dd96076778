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

The limits themselves travel with the rows too, so that one place decides them for a whole
tree: a root records the values of the process that makes it (``root_labels``: the API
process that takes the submit, in scale-out mode; the orchestrator that fires a schedule or
follows an event), and every child copies its parent's. Whichever orchestrator drives a
level, before or after a takeover, and whatever its own settings, a tree obeys the limits in
force where and when its root was made; a row made before the limits were recorded (or with
labels that are not valid limits) falls back on the settings of the process making the child,
which its children then keep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from orchestrion.errors import ErrorCategory, PermanentNodeError

if TYPE_CHECKING:
    from orchestrion.definition.model import NodeSpec
    from orchestrion.settings import Settings
    from orchestrion.store.base import ExecutionRecord

__all__ = [
    "DEPTH",
    "DEPTH_CEILING",
    "MAX_DEPTH",
    "MAX_WIDTH",
    "WIDTH",
    "WIDTH_CEILING",
    "child_labels",
    "root_labels",
]

DEPTH = "child_depth"
WIDTH = "child_width"
MAX_DEPTH = "max_child_depth"
"""The label recording the ``max_child_depth`` a tree obeys (as the setting is named)."""
MAX_WIDTH = "max_child_width"
"""The label recording the ``max_child_width`` a tree obeys."""
_STARTERS = frozenset({"workflow"})

DEPTH_CEILING = 32
"""The most ``max_child_depth`` may be set to (the settings say so too): walks down and up a
lineage (cancels, decisions, what classified data a parent's children hold) go this deep."""
WIDTH_CEILING = 65536
"""The most ``max_child_width`` may be set to (the settings say so too)."""


def root_labels(settings: Settings) -> dict[str, int]:
    """The limits a root execution records for its tree: those of ``settings``."""
    return {MAX_DEPTH: settings.max_child_depth, MAX_WIDTH: settings.max_child_width}


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
    recorded_depth = _limit(parent, MAX_DEPTH, DEPTH_CEILING)
    recorded_width = _limit(parent, MAX_WIDTH, WIDTH_CEILING)
    max_depth = recorded_depth or settings.max_child_depth
    max_width = recorded_width or settings.max_child_width
    depth = 1 if root else _label(parent, DEPTH) + 1
    if depth > max_depth:
        raise PermanentNodeError(
            f"this child execution would be nested {depth} levels deep, more than the"
            f" {max_depth} that ORCHESTRION_MAX_CHILD_DEPTH{_set(recorded_depth)}: a workflow"
            " that starts itself needs a base case (a `when` on its workflow node)",
            category=ErrorCategory.CONFIG,
        )
    width = 1
    if not root:
        starters = sum(1 for node in nodes if _starts_children(node, canonical))
        width = _label(parent, WIDTH) * max(starters, 1) * max(siblings, 1)
    if width > max_width:
        raise PermanentNodeError(
            f"this child execution's share of level {depth} of its root's sub-workflows would"
            f" be {width} executions, more than the {max_width} that"
            f" ORCHESTRION_MAX_CHILD_WIDTH{_set(recorded_width)} (below the root's own"
            " children, each level multiplies by the child-starting nodes of the one above,"
            " and a map's items)",
            category=ErrorCategory.CONFIG,
        )
    return {DEPTH: depth, WIDTH: width, MAX_DEPTH: max_depth, MAX_WIDTH: max_width}


def _set(recorded: int | None) -> str:
    """Where the limit in an error comes from."""
    if recorded is None:  # a tree made before its limits were recorded
        return " allows in this process"
    return " set for this tree (its value in the process that made the tree's root execution)"


def _limit(record: ExecutionRecord, name: str, ceiling: int) -> int | None:
    """The limit ``record`` carries for its tree, if it carries a valid one."""
    value = record.labels.get(name) if isinstance(record.labels, dict) else None
    if isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= ceiling:
        return value
    return None


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
