"""YAML aliases checked on the composed node graph, before any value is built from it.

An anchor (``&n``) and its aliases (``*n``) let a few hundred bytes of YAML describe a
structure that is enormous once expanded ("billion laughs"), or one that contains itself
(``&n {self: *n}``). Every step after parsing (validating, converting to JSON, storing,
re-running) walks the expanded structure, so an unbounded or cyclic one stalls the process.

``check_aliases`` walks the node graph once, each node once (memoised), and refuses:

- a recursive alias: a node that is reached again from inside itself, named by the line of
  the key (or item) that refers back and the line of the anchor;
- a document whose expanded size, counted in bytes about as JSON would write it, is larger
  than a budget; the count stops as soon as the budget is passed.

``safe_load`` parses a YAML text with the safe loader after these checks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import yaml

__all__ = ["ALIAS_EXPANSION", "RECURSIVE_ALIAS", "check_aliases", "expanded_bytes", "safe_load"]

RECURSIVE_ALIAS = "recursive alias"
ALIAS_EXPANSION = "YAML aliases expand"

_MAPPING = "mapping"
_SEQUENCE = "sequence"


def _children(node: yaml.Node) -> list[tuple[yaml.Node, yaml.Node | None]]:
    """(child, key node naming it or None) of a mapping (keys and values) or a sequence."""
    kind = getattr(node, "id", "")  # the node class's id: no yaml import on this hot path
    if kind == _MAPPING:
        pairs: list[tuple[yaml.Node, yaml.Node | None]] = []
        for key, value in node.value:
            pairs.append((key, None))
            pairs.append((value, key))
        return pairs
    if kind == _SEQUENCE:
        return [(item, None) for item in node.value]
    return []


def _own_bytes(node: yaml.Node) -> int:
    """A node's bytes without its children: a scalar's text plus one separator."""
    kind = getattr(node, "id", "")
    if kind in (_MAPPING, _SEQUENCE):
        return 2  # the brackets
    return len(node.value) + 1


def expanded_bytes(root: yaml.Node, budget: int) -> tuple[int, yaml.Node]:
    """The document's size once every alias is expanded, and the root; or, as soon as one
    node's count passes ``budget``, that count and that node.

    Raises ``yaml.MarkedYAMLError`` ("recursive alias") when a node contains itself. Linear
    in the number of distinct nodes: each node's size is computed once, from its children's.
    """
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # the nodes whose children are being sized: the ancestors
    # (node, where the edge that reached it is written, ready: its children are sized)
    stack: list[tuple[yaml.Node, yaml.Mark, bool]] = [(root, root.start_mark, False)]
    while stack:
        node, mark, ready = stack.pop()
        key = id(node)
        if ready:
            size = _own_bytes(node) + sum(sizes[id(child)] for child, _ in _children(node))
            open_nodes.discard(key)
            sizes[key] = size
            if size > budget:
                return size, node  # every node is inside the root: the whole is larger
            continue
        if key in sizes:
            continue
        open_nodes.add(key)
        stack.append((node, mark, True))
        # Reversed: the first child is sized first, so a cycle is reported where the
        # document closes it (its last reference), in reading order.
        for child, key_node in reversed(_children(node)):
            if id(child) in open_nodes:
                # An alias node is replaced by its anchor's node when composed: the key
                # naming it is the best place to show (for an item, its list's key).
                where = key_node.start_mark if key_node is not None else mark
                raise yaml.MarkedYAMLError(
                    problem=(
                        f"{RECURSIVE_ALIAS}: a value refers to the value that contains it "
                        f"(anchored at line {child.start_mark.line + 1})"
                    ),
                    problem_mark=where,
                )
            if id(child) not in sizes:
                child_mark = key_node.start_mark if key_node is not None else child.start_mark
                stack.append((child, child_mark, False))
    return sizes[id(root)], root


def check_aliases(
    root: yaml.Node, budget: int, what: str = "the document", setting: str = ""
) -> None:
    """Refuse a recursive alias, or aliases that expand ``what`` past ``budget`` bytes
    (``setting``: the name of the limit, shown in the message)."""
    import yaml

    size, node = expanded_bytes(root, budget)
    if size > budget:
        named = f" ({setting})" if setting else ""
        raise yaml.MarkedYAMLError(
            problem=(
                f"{ALIAS_EXPANSION} {what} to more than {budget} bytes{named} "
                f"(at least {size}); refusing it"
            ),
            problem_mark=node.start_mark,
        )


def _shares_nodes(root: yaml.Node) -> bool:
    """Whether any node is reached twice (only aliases do that)."""
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            return True
        seen.add(id(node))
        stack.extend(child for child, _ in _children(node))
    return False


def safe_load(text: str, budget: int, what: str = "the document") -> Any:
    """``yaml.safe_load`` of one document, refusing recursive or oversized aliases first."""
    import yaml

    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    loader = loader_class(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        if _shares_nodes(root):
            check_aliases(root, budget, what)
        return loader.construct_document(root)
    finally:
        loader.dispose()
