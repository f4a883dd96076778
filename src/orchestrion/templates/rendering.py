"""Templates in node config: sandboxed Jinja2 with strict undefined and native single values.

A config string may use ``{{ input.param }}``, ``{{ node_id.output.path }}``,
``{{ nodes['node-id'].output }}``, ``{{ secrets.NAME }}`` and ``{{ execution.id }}``. A string
that is exactly one ``{{ expr }}`` keeps the native type of the expression (a list stays a
list); any other template string renders to text. A missing name, key or attribute is an
error that names it, never an empty string.

Rendering runs in Jinja's immutable sandbox, with guards against resource bombs
(``orchestrion.templates.bounds``): every operator, call, filter, literal and output is
priced from its operands before it runs, so that no integer exceeds 4300 digits, no value a
template builds is larger as text than the output limit or nests more than 100 levels, and
the text a render produces in all (buffered text included) stays within 8 output limits.
``range`` is capped and loop iterations over ranges share a budget. Every render has a time
limit and an output-size limit (``TemplateLimits``: the governance policy's
``templates.timeout_seconds`` and ``templates.max_output_bytes``, set for the attempt being
run with ``template_limits``). The time limit is checked at every operation, attribute
access, loop iteration and output chunk, so a nested loop or a recursive macro stops within
the limit instead of holding the event loop; since no single operation can run long, the
limit holds for each of them too. Mapping keys win over methods (``{{ out.items }}`` is the
``items`` key of an HTTP response, not ``dict.items``).

This module is the API and the fast paths (no template; a plain ``{{ node.output.path }}``
read); the sandbox itself is ``orchestrion.templates.sandbox``, imported on first need.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrion.templates.sandbox import _Environment


__all__ = [
    "MAX_RANGE",
    "MAX_RENDERED_SIZE",
    "RESERVED_NAMES",
    "TemplateInfo",
    "TemplateLimits",
    "build_context",
    "condition_references",
    "condition_truth",
    "enter_template_limits",
    "evaluate_condition",
    "expression_source",
    "is_template",
    "leave_template_limits",
    "node_expression",
    "render_value",
    "template_errors",
    "template_info",
    "template_limits",
    "template_references",
    "template_strings",
]

MAX_RANGE = 10_000
"""Most items one ``range()`` call may produce."""
MAX_RANGE_ITERATIONS = 100_000
"""Most range items one template may iterate over in total (nested loops share it)."""
MAX_RENDERED_SIZE = 1024 * 1024
"""Largest text (in characters) one template may render to."""

RESERVED_NAMES = frozenset({"input", "secrets", "nodes", "execution"})
"""Top-level template names that are not node ids (``input`` doubles as a node id, see below)."""

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MAX_SOURCE_IN_MESSAGE = 200


# --------------------------------------------------------------------------- namespaces


class _Namespace:
    """Base of the objects placed in a render context; the environment asks them by name."""

    def lookup(self, env: _Environment, name: Any) -> Any:
        raise NotImplementedError

    def native(self) -> Any:
        raise NotImplementedError


class _NodeRef(_Namespace):
    """One node as templates see it: only ``.output``."""

    __slots__ = ("node_id", "output")

    def __init__(self, node_id: str, output: Any) -> None:
        self.node_id = node_id
        self.output = output

    def lookup(self, env: _Environment, name: Any) -> Any:
        if name == "output":
            return self.output
        return env.undefined(
            hint=f"node '{self.node_id}' exposes only '.output', not {name!r}", name=name
        )

    def native(self) -> Any:
        return {"output": self.output}

    def __repr__(self) -> str:
        return f"<node {self.node_id}>"


class _Nodes(_Namespace):
    """``nodes['any-id']``: every node whose output is available, hyphenated ids included."""

    __slots__ = ("_outputs",)

    def __init__(self, outputs: Mapping[str, Any]) -> None:
        self._outputs = outputs

    def lookup(self, env: _Environment, name: Any) -> Any:
        if isinstance(name, str) and name in self._outputs:
            return _NodeRef(name, self._outputs[name])
        return env.undefined(
            hint=f"no output of node {name!r} is available here (is it an upstream dependency?)",
            name=name,
        )

    def native(self) -> Any:
        return {node_id: {"output": out} for node_id, out in self._outputs.items()}

    def __repr__(self) -> str:
        return "<nodes>"


class _Input(_Namespace):
    """``input.param`` is a workflow input; ``input.output`` is the output of a node ``input``.

    Reference 001 names its entry node ``input`` and uses both forms, so both must work.
    """

    __slots__ = ("_node_output", "_params")

    _NO_NODE = object()

    def __init__(self, params: Mapping[str, Any], node_output: Any = _NO_NODE) -> None:
        self._params = params
        self._node_output = node_output

    def lookup(self, env: _Environment, name: Any) -> Any:
        if name == "output" and self._node_output is not _Input._NO_NODE:
            return self._node_output
        if isinstance(name, str) and name in self._params:
            return self._params[name]
        return env.undefined(hint=f"workflow input {name!r} was not provided", name=name)

    def native(self) -> Any:
        return dict(self._params)

    def __repr__(self) -> str:
        return "<input>"


class _Secrets(_Namespace):
    """Strict secret lookup. Not iterable and never printed, so values cannot be listed."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def lookup(self, env: _Environment, name: Any) -> Any:
        if isinstance(name, str) and name in self._values:
            return self._values[name]
        return env.undefined(hint=f"secret {name!r} is not defined", name=name)

    def native(self) -> Any:
        from jinja2.exceptions import SecurityError  # only a render gets here: Jinja2 is loaded

        raise SecurityError("secrets cannot be used as a whole; name one: secrets.NAME")

    def has(self, name: str) -> bool:
        """Whether a secret called ``name`` is configured (its value is not looked at)."""
        return name in self._values

    def longest(self) -> int:
        """The size in bytes of the longest value (0 when there are none)."""
        return max((_byte_size(v) for v in self._values.values()), default=0)

    def emptied(self) -> _Secrets:
        """The same names, every value empty: to size a render without the values."""
        return _Secrets(dict.fromkeys(self._values, ""))

    def values_to_hide(self) -> list[str]:
        return [v for v in self._values.values() if len(v) >= 4]

    def __repr__(self) -> str:
        return "<secrets>"

    __str__ = __repr__


# --------------------------------------------------------------------------- guards


@dataclass(frozen=True, slots=True)
class TemplateLimits:
    """How long one template string may take to render and how large its result may be."""

    timeout_seconds: float = 1.0
    max_output_bytes: int = MAX_RENDERED_SIZE


_DEFAULT_LIMITS = TemplateLimits()
_LIMITS: ContextVar[TemplateLimits] = ContextVar(
    "orchestrion_template_limits", default=_DEFAULT_LIMITS
)


# The last two distinct limits found equal: a policy's own limits and those in force.
_EQUAL: tuple[TemplateLimits | None, TemplateLimits | None] = (None, None)


def enter_template_limits(limits: TemplateLimits | None) -> Token[TemplateLimits] | None:
    """Render with ``limits`` from now on (``None``: keep those in force), for a scope
    entered and left by two calls (an attempt's layers); what ``leave_template_limits``
    needs: None when they are in force already (the common case: nothing to reset)."""
    global _EQUAL
    if limits is None:
        return None
    current = _LIMITS.get()
    if limits is current or (_EQUAL[0] is limits and _EQUAL[1] is current):
        return None
    if limits == current:
        _EQUAL = (limits, current)  # frozen: equal for good (every attempt asks again)
        return None
    return _LIMITS.set(limits)


def leave_template_limits(token: Token[TemplateLimits] | None) -> None:
    """Put back the limits in force before ``enter_template_limits`` gave ``token``."""
    if token is not None:
        _LIMITS.reset(token)


@contextlib.contextmanager
def template_limits(limits: TemplateLimits | None) -> Iterator[None]:
    """Render with ``limits`` inside the block (``None``: keep those in force)."""
    token = enter_template_limits(limits)
    try:
        yield
    finally:
        leave_template_limits(token)


# --------------------------------------------------------------------------- analysis


def is_template(value: Any) -> bool:
    """True if ``value`` is a string with Jinja markup (``{{`` or ``{%``)."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def expression_source(expr: str) -> str:
    """``expr`` as template source: a template stays as is, a bare expression is wrapped."""
    return expr if is_template(expr) else "{{ " + expr + " }}"


@dataclass(frozen=True, slots=True)
class TemplateInfo:
    """What static analysis learns from one template string.

    ``names``: top-level names it reads; ``node_keys``: node ids named literally through
    ``nodes['id']`` / ``nodes.id``; ``dynamic_nodes``: ``nodes[...]`` with a computed key;
    ``input_output``: it reads ``input.output`` (the output of a node called ``input``);
    ``error``: the syntax error, if the string does not parse (the rest is then empty).
    """

    names: frozenset[str] = frozenset()
    node_keys: frozenset[str] = frozenset()
    dynamic_nodes: bool = False
    input_output: bool = False
    error: str | None = None


@lru_cache(maxsize=8192)
def template_info(source: str) -> TemplateInfo:
    """Parse ``source`` once (cached) and report the names it uses or its syntax error."""
    expr = _single_expression(source)
    if expr is not None and _REFERENCE.match(expr):
        parts = expr.split(".")
        if not _JINJA_WORDS.intersection(parts):
            # The commonest template, `{{ node.output.field }}`: what Jinja's analysis would
            # find, without it (a large definition holds thousands of these).
            first = parts[0]
            return TemplateInfo(
                frozenset({first}),
                frozenset(parts[1:2]) if first == "nodes" else frozenset(),
                False,
                first == "input" and parts[1:2] == ["output"],
            )
    from orchestrion.templates import sandbox as template_sandbox

    return template_sandbox.analyse(source)


_REFERENCE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$")
# Words Jinja reads as constants or operators, never as names.
_JINJA_WORDS = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is", "if",
     "else", "recursive"}
)  # fmt: skip


def _walk_strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _walk_strings(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            yield from _walk_strings(item, f"{path}[{i}]")


def template_strings(value: Any, path: str = "config") -> Iterator[tuple[str, str]]:
    """Every template string inside ``value`` (dicts and lists, recursively) with its path."""
    for where, text in _walk_strings(value, path):
        if is_template(text):
            yield where, text


def template_references(value: Any) -> set[str]:
    """Top-level names read by any template string found in ``value`` (recursively)."""
    found: set[str] = set()
    for _, text in template_strings(value, ""):
        found |= template_info(text).names
    return found


def condition_references(expr: str | None) -> set[str]:
    """Top-level names read by a ``when:`` condition, bare (``x > 1``) or ``{{ x > 1 }}``."""
    if not expr:
        return set()
    return set(template_info(expression_source(expr)).names)


def template_errors(value: Any, path: str = "config") -> list[tuple[str, str]]:
    """Syntax errors of the template strings in ``value``, as (field path, message)."""
    errors: list[tuple[str, str]] = []
    for where, text in template_strings(value, path):
        error = template_info(text).error
        if error is not None:
            errors.append((where, error))
    return errors


# --------------------------------------------------------------------------- rendering


@lru_cache(maxsize=4096)
def _single_expression(source: str) -> str | None:
    """The inner expression when ``source`` is exactly one ``{{ expr }}``, else None."""
    match = _SINGLE_EXPR.match(source)
    if match is None:
        return None
    inner = match.group("expr")
    if any(mark in inner for mark in ("{{", "}}", "{%", "%}", "{#", "#}")):
        return None
    # `{{- x -}}` is whitespace control, not a negation.
    if inner[:1] in "-+":
        inner = inner[1:]
    if inner[-1:] in "-+":
        inner = inner[:-1]
    return inner.strip() or None


_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)+$")
_NOT_FOUND = object()


@lru_cache(maxsize=4096)
def _output_path(expr: str) -> tuple[str, ...] | None:
    """``("a", "x", "y")`` for ``a.output.x.y``, the commonest template: a node's output."""
    if _DOTTED.match(expr) is None:
        return None
    parts = expr.split(".")
    if parts[1] != "output" or parts[0] in RESERVED_NAMES:
        return None
    return (parts[0], *parts[2:])


def _read_output(path: tuple[str, ...], context: Mapping[str, Any]) -> Any:
    """The value ``path`` names when every step is a plain key, else ``_NOT_FOUND`` (then
    the sandbox evaluates it, with its messages for what is missing). The same value the
    sandbox gives: mapping keys win over attributes there too."""
    ref = context.get(path[0])
    if not isinstance(ref, _NodeRef):
        return _NOT_FOUND
    value = ref.output
    for key in path[1:]:
        if not isinstance(value, dict) or key not in value:
            return _NOT_FOUND
        value = value[key]
    return value


def _byte_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _render_string(source: str, context: Mapping[str, Any]) -> Any:
    expr = _single_expression(source)
    path = _output_path(expr) if expr is not None else None
    if path is not None:
        # No sandbox needed to read a value: nothing runs, nothing loops.
        value = _read_output(path, context)
        if value is not _NOT_FOUND and not (
            isinstance(value, str) and _byte_size(value) > _LIMITS.get().max_output_bytes
        ):
            return value
    from orchestrion.templates import sandbox as template_sandbox

    return template_sandbox.render(source, expr, context)


def render_value(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template string in ``value`` (dicts and lists, recursively).

    A string that is exactly one ``{{ expr }}`` becomes the expression's value with its own
    type; other template strings become text; everything else is returned unchanged.
    Raises ``PermanentNodeError(category="template")`` naming what is missing or wrong.
    """
    if isinstance(value, str):
        return _render_string(value, context) if is_template(value) else value
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [render_value(item, context) for item in value]
    return value


_FALSE_TEXT = frozenset({"", "false", "0", "no", "none", "null", "off"})


def evaluate_condition(expr: str, context: Mapping[str, Any]) -> bool:
    """Truth of a ``when:`` condition: ``"{{ x > 1 }}"`` or bare ``"x > 1"``.

    A template that mixes text and expressions renders to text, and the text
    ``false``/``0``/``no``/``none``/``null``/``off`` or nothing counts as false.
    """
    return condition_truth(render_value(expression_source(expr.strip()), context))


def condition_truth(result: Any) -> bool:
    """Whether a condition's rendered ``result`` counts as true (see ``evaluate_condition``)."""
    if isinstance(result, str):
        return result.strip().lower() not in _FALSE_TEXT
    return bool(result)


def build_context(
    inputs: Mapping[str, Any],
    outputs: Mapping[str, Any],
    *,
    secrets: Mapping[str, str] | None = None,
    execution: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The names templates see: ``input``, ``secrets``, ``nodes``, ``execution``, node ids.

    ``outputs`` maps node ids to their outputs; each id becomes an object with ``.output``.
    A node called ``input`` is reached through ``input.output``; ids that clash with the other
    reserved names (or are not identifiers) are reached through ``nodes['id']``.
    """
    input_ns = _Input(inputs, outputs["input"]) if "input" in outputs else _Input(inputs)
    context: dict[str, Any] = {
        node_id: _NodeRef(node_id, output)
        for node_id, output in outputs.items()
        if node_id not in RESERVED_NAMES
    }
    context["input"] = input_ns
    context["secrets"] = _Secrets(secrets or {})
    context["nodes"] = _Nodes(outputs)
    context["execution"] = dict(execution or {})
    return context


def node_expression(node_id: str, path: str = "") -> str:
    """A template expression reading ``node_id``'s output, e.g. ``nodes['x-y'].output.a``."""
    if node_id == "input":
        base = "input.output"
    elif _IDENTIFIER.match(node_id) and node_id not in RESERVED_NAMES:
        base = f"{node_id}.output"
    else:
        base = f"nodes[{node_id!r}].output"
    for part in (p for p in path.split(".") if p):
        base += f".{part}" if _IDENTIFIER.match(part) else f"[{part!r}]"
    return base
