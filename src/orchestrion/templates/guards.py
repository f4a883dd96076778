"""The guards woven into every parsed template, so what Jinja would do unseen is checked.

Loops tick the time limit item by item, ``range()`` is capped and spends the iteration
budget, ``~`` concatenation and list, tuple and dict literals are measured, and the literal
text of output statements counts against what a render may write (``templates/bounds.py``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

from jinja2 import (
    nodes,
)
from jinja2.exceptions import SecurityError
from jinja2.visitor import NodeTransformer

from orchestrion.templates.bounds import (
    BUDGET,
    checked,
    emit_text,
    max_size,
    measure,
    tick,
    too_large,
)
from orchestrion.templates.rendering import (
    MAX_RANGE,
    MAX_RANGE_ITERATIONS,
)

__all__ = [
    "BUILT",
    "CONCAT",
    "LOOP_GUARD",
    "TEXT",
    "CappedRange",
    "Guards",
    "guard_built",
    "guard_concat",
    "guard_loop",
    "guard_text",
    "safe_range",
]


def guard_loop(iterable: Any) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: each item is a time-limit check."""
    for item in iterable:
        tick()
        yield item


class CappedRange:
    """``range()`` for templates: at most MAX_RANGE items, and iterating spends the budget."""

    __slots__ = ("_range",)

    def __init__(self, r: range) -> None:
        self._range = r

    def __iter__(self) -> Iterator[int]:
        budget = BUDGET.get()
        for value in self._range:
            tick()
            if budget is not None:
                budget.remaining -= 1
                if budget.remaining < 0:
                    raise SecurityError(
                        f"template iterates over more than {MAX_RANGE_ITERATIONS} range items"
                    )
            yield value

    def __len__(self) -> int:
        return len(self._range)

    def __getitem__(self, index: int) -> int:
        return self._range[index]

    def __contains__(self, value: object) -> bool:
        return value in self._range

    def __repr__(self) -> str:
        return repr(self._range)


def safe_range(*args: int) -> CappedRange:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items, got {len(r)}")
    return CappedRange(r)


# Names of the guards the parser weaves into every template; a template naming one of them
# only gets the same checks again.
LOOP_GUARD = "orchestrion_loop_guard"
CONCAT = "orchestrion_concat"
BUILT = "orchestrion_built"
TEXT = "orchestrion_text"


def _guard(node: nodes.Expr, name: str, args: list[nodes.Expr] | None = None) -> nodes.Filter:
    return nodes.Filter(node, name, args or [], [], None, None, lineno=node.lineno)


class Guards(NodeTransformer):
    """Rewrites a parsed template so that what Jinja would do unseen passes a guard:
    loops over plain lists, ``~`` concatenation, list/tuple/dict literals, and the literal
    text of output statements (counted against the text a render may produce)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _guard(cast(nodes.Expr, node.iter), LOOP_GUARD)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        first, *rest = node.nodes
        return _guard(first, CONCAT, rest)

    def _built(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return _guard(node, BUILT)

    visit_List = visit_Dict = _built

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            return node  # an assignment target: `{% for k, v in ... %}`
        return self._built(node)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        text = sum(len(child.data) for child in node.nodes if isinstance(child, nodes.TemplateData))
        if text:
            node.nodes.insert(0, _guard(nodes.Const(text, lineno=node.lineno), TEXT))
        return node


def guard_concat(first: Any, *rest: Any) -> str:
    parts = (first, *rest)
    size = sum(measure(part, "concatenation").size for part in parts)
    if size > max_size():
        raise too_large("concatenation", size)
    return "".join(map(str, parts))


def guard_built(value: Any) -> Any:
    return checked(value, "a literal")


def guard_text(size: int) -> str:
    emit_text(size)
    return ""
