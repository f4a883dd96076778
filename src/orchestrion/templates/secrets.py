"""Which secrets a template string reads, found on its Jinja syntax tree (never by substring).

``secret_use(source)`` parses the template with the sandbox's environment (cached) and walks
every ``Name`` node called ``secrets``. The one form that names a secret is a direct lookup
with a constant key: ``secrets.NAME`` or ``secrets['NAME']``; what is done with the value
afterwards (filters, slicing, concatenation) does not hide the read. Any other use of the
name (``secrets|attr('X')``, ``secrets[key]``, ``{% set s = secrets %}``, ``[secrets][0]``,
a loop over it, a macro argument, ``{% set secrets = ... %}``) is reported as ``aliased``:
the template reads secrets, but which ones cannot be known before it runs.

``computed`` is the stricter rule a request field is held to: no computation may depend on a
secret's value, or its result (an error message, an error's kind, a branch taken, a length)
becomes an oracle that spells the secret out. The only use allowed is a direct
interpolation, ``{{ secrets.NAME }}`` or ``{{ secrets['NAME'] }}`` as a whole output
expression, with literal text around it, and only where the text goes straight into the
rendered result: at the top of the template or in an ``{% if %}`` branch (whose test cannot
involve a secret), never in a macro, a ``{% set %}`` block, a filter or call block, a
loop or an ``autoescape`` block, whose rendered text other code could compute with.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["SECRETS_NAME", "SecretUse", "secret_use"]

SECRETS_NAME = "secrets"


@dataclass(frozen=True, slots=True)
class SecretUse:
    """What one template does with ``secrets``.

    ``reads``: the name ``secrets`` occurs anywhere in it; ``names``: the secrets named by
    a constant lookup; ``aliased``: some use of ``secrets`` that is not such a lookup;
    ``computed``: some use that is not a direct interpolation (``aliased`` ones included).
    A template that does not parse reads nothing here (its syntax error is reported apart).
    """

    reads: bool = False
    names: frozenset[str] = frozenset()
    aliased: bool = False
    computed: bool = False


_NONE = SecretUse()


@lru_cache(maxsize=8192)
def secret_use(source: str) -> SecretUse:
    """What ``source`` (a template string) does with ``secrets``; see the module docstring."""
    if SECRETS_NAME not in source:
        # Jinja names are spelled out in the source (no escapes build one): a template
        # without the word cannot reach the namespace. The walk below decides for the rest.
        return _NONE
    from jinja2 import TemplateSyntaxError, nodes

    from orchestrion.templates.sandbox import _ENV

    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:
        return _NONE
    except RecursionError:
        # Nested too deeply to parse here, so too deep to check: it cannot pass as safe.
        return _UNKNOWN
    names: set[str] = set()
    reads = aliased = computed = False
    for ancestors, child in _edges(tree):
        if not isinstance(child, nodes.Name) or child.name != SECRETS_NAME:
            continue
        reads = True
        name = _constant_lookup(ancestors[-1], child)
        if name is None:
            aliased = computed = True
        else:
            names.add(name)
            computed = computed or not _interpolated(ancestors)
    if not reads:
        return _NONE
    return SecretUse(True, frozenset(names), aliased, computed)


_UNKNOWN = SecretUse(True, frozenset(), True, True)


def _edges(tree: Any) -> Any:
    """(ancestors, child) for every node below ``tree``; ``ancestors`` ends with the parent."""
    stack: list[tuple[tuple[Any, ...], Any]] = [((), tree)]
    while stack:
        above, parent = stack.pop()
        line = (*above, parent)
        for child in parent.iter_child_nodes():
            yield line, child
            stack.append((line, child))


def _interpolated(ancestors: tuple[Any, ...]) -> bool:
    """Whether the lookup whose ancestors these are (``ancestors[-1]`` is the lookup) is a
    whole output expression whose text lands in the rendered result unchanged."""
    from jinja2 import nodes

    if len(ancestors) < 3:
        return False
    lookup, output = ancestors[-1], ancestors[-2]
    if not isinstance(output, nodes.Output) or not any(n is lookup for n in output.nodes):
        return False
    # Above the output: only the template itself and if-branches. Any other statement
    # (macro, call or filter block, set block, loop, autoescape, with) may hand the
    # rendered text to code that computes with it, or repeat it at will.
    return all(type(node) in (nodes.Template, nodes.If) for node in ancestors[:-2])


def _constant_lookup(parent: Any, name_node: Any) -> str | None:
    """``NAME`` when ``parent`` is ``secrets.NAME`` or ``secrets['NAME']`` (a load)."""
    from jinja2 import nodes

    if name_node.ctx != "load":
        return None
    if isinstance(parent, nodes.Getattr) and parent.node is name_node:
        return str(parent.attr)
    if (
        isinstance(parent, nodes.Getitem)
        and parent.node is name_node
        and isinstance(parent.arg, nodes.Const)
        and isinstance(parent.arg.value, str)
    ):
        return parent.arg.value
    return None
