"""Which secrets a template string reads, found on its Jinja syntax tree (never by substring).

``secret_use(source)`` parses the template with the sandbox's environment (cached) and walks
every ``Name`` node called ``secrets``. The one form that names a secret is a direct lookup
with a constant key: ``secrets.NAME`` or ``secrets['NAME']``; what is done with the value
afterwards (filters, slicing, concatenation) does not hide the read. Any other use of the
name (``secrets|attr('X')``, ``secrets[key]``, ``{% set s = secrets %}``, ``[secrets][0]``,
a loop over it, a macro argument, ``{% set secrets = ... %}``) is reported as ``aliased``:
the template reads secrets, but which ones cannot be known before it runs.
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
    a constant lookup; ``aliased``: some use of ``secrets`` that is not such a lookup.
    A template that does not parse reads nothing here (its syntax error is reported apart).
    """

    reads: bool = False
    names: frozenset[str] = frozenset()
    aliased: bool = False


_NONE = SecretUse()


@lru_cache(maxsize=8192)
def secret_use(source: str) -> SecretUse:
    """What ``source`` (a template string) does with ``secrets``; see the module docstring."""
    if SECRETS_NAME not in source:
        # Jinja names are spelled out in the source (no escapes build one): a template
        # without the word cannot reach the namespace. The walk below decides for the rest.
        return _NONE
    from jinja2 import TemplateSyntaxError, nodes

    from orchestrion.template_sandbox import _ENV

    try:
        tree = _ENV.parse(source)
    except TemplateSyntaxError:
        return _NONE
    names: set[str] = set()
    reads = aliased = False
    for parent, child in _edges(tree):
        if not isinstance(child, nodes.Name) or child.name != SECRETS_NAME:
            continue
        reads = True
        name = _constant_lookup(parent, child)
        if name is None:
            aliased = True
        else:
            names.add(name)
    if not reads:
        return _NONE
    return SecretUse(True, frozenset(names), aliased)


def _edges(tree: Any) -> Any:
    """(parent, child) for every node below ``tree``."""
    stack = [tree]
    while stack:
        parent = stack.pop()
        for child in parent.iter_child_nodes():
            yield parent, child
            stack.append(child)


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
