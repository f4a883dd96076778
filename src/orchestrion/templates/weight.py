"""Which attempts render their templates off the event loop: all but light expressions.

A light template is one ``{{ expr }}`` of at most ``MAX_LIGHT_EXPRESSION`` characters made
of names (``node.output.field``, ``input.x``, ``nodes['a-b'].output[0]``), literals,
comparisons, ``and``/``or``/``not``, ``in``, ``is`` tests and ``if``/``else``: no call,
filter, computed subscript, arithmetic that builds a value, loop or macro. It reads a few
values and compares them, in microseconds, so it renders in the engine's turn (or the
worker's loop): a thread would cost more than the render. Any other template may run up to
the policy's ``templates.timeout_seconds`` and is rendered in a render thread
(``orchestrion.templates.threads``), so that the event loop (the API's ``/health``
included) keeps answering meanwhile. The decision is made per attempt from every string it
will render: its ``when:``, its config (the ``config`` a ``map`` renders per item
included) and a ``condition``'s case conditions.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from orchestrion.templates.rendering import expression_source

__all__ = ["MAX_LIGHT_EXPRESSION", "is_light", "renders_off_loop"]

MAX_LIGHT_EXPRESSION = 128
"""Longest expression (in characters) a light template may hold: a bound on its operations."""

_SINGLE = re.compile(r"^\s*\{\{-?(?P<expr>.*?)-?\}\}\s*$", re.DOTALL)
_TOKEN = re.compile(
    r"""\s*(?:
        (?P<name>[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
      | (?P<attr>\.[A-Za-z_][A-Za-z0-9_]*)
      | (?P<index>\[\s*(?:'[^'\\{}%#]*'|"[^"\\{}%#]*"|\d+)\s*\])
      | (?P<number>\d+(?:\.\d+)?)
      | (?P<string>'[^'\\{}%#]*'|"[^"\\{}%#]*")
      | (?P<op>==|!=|<=|>=|<|>|-)
      | (?P<open>\()
      | (?P<close>\))
    )""",
    re.VERBOSE,
)


@lru_cache(maxsize=8192)
def is_light(source: str) -> bool:
    """True if the template ``source`` is one light expression (see the module docstring)."""
    match = _SINGLE.match(source)
    if match is None:
        return False
    expr = match.group("expr").strip()
    if not expr or len(expr) > MAX_LIGHT_EXPRESSION:
        return False
    position, previous = 0, ""
    while position < len(expr):
        token = _TOKEN.match(expr, position)
        if token is None or token.end() == position:
            return False  # a filter, a subscript, a call's comma, arithmetic, markup...
        kind = token.lastgroup or ""
        if kind == "name" and token.group("name") in _OPERATORS:
            kind = "op"
        if kind == "open" and previous in _READS:
            return False  # a call: `range(...)`, `x.items()`
        if kind in ("attr", "index") and previous not in _READS:
            return False
        position, previous = token.end(), kind
    return True


_OPERATORS = frozenset({"and", "or", "not", "in", "is", "if", "else"})
_READS = frozenset({"name", "attr", "index", "close"})  # what a value ends with


def _light_condition(expr: Any) -> bool:
    return not isinstance(expr, str) or is_light(expression_source(expr.strip()))


# The names (aliases included) of the handlers that render conditions or configs of their own.
_CONDITIONS = frozenset({"condition"})
_MAPS = frozenset({"map", "foreach"})


def renders_off_loop(
    handler: str | None,
    config: Any,
    when: str | None = None,
    canonical: Callable[[str], str | None] | None = None,
) -> bool:
    """Whether an attempt of ``handler`` with ``config`` and ``when`` renders any template
    that is not light (see the module docstring). ``canonical`` turns an alias into the
    handler's name; it is asked only for a config that could be a condition's or a map's."""
    if when and not _light_condition(when):
        return True
    if isinstance(config, Mapping) and ("cases" in config or "config" in config):
        name = canonical(handler) if canonical is not None and handler else handler
        if name in _CONDITIONS and _heavy_cases(config):
            return True
        if name in _MAPS:
            inner = config.get("handler")
            inner = canonical(inner) if canonical is not None and isinstance(inner, str) else inner
            if inner in _CONDITIONS and _heavy_cases(config.get("config")):
                return True
    return _heavy(config)


def _heavy_cases(config: Any) -> bool:
    cases = config.get("cases") if isinstance(config, Mapping) else None
    if not isinstance(cases, list):
        return False
    return any(
        isinstance(case, Mapping) and not _light_condition(case.get("when")) for case in cases
    )


def _heavy(value: Any) -> bool:
    """Whether ``value`` (dicts and lists, recursively) holds a template that is not light."""
    if isinstance(value, str):
        return ("{{" in value or "{%" in value) and not is_light(value)
    if isinstance(value, Mapping):
        return any(_heavy(item) for item in value.values())
    if isinstance(value, list | tuple):
        return any(_heavy(item) for item in value)
    return False
