"""Templates in node config: sandboxed Jinja2 with strict undefined and native single values.

A config string may use ``{{ input.param }}``, ``{{ node_id.output.path }}``,
``{{ nodes['node-id'].output }}``, ``{{ secrets.NAME }}`` and ``{{ execution.id }}``. A string
that is exactly one ``{{ expr }}`` keeps the native type of the expression (a list stays a
list); any other template string renders to text. A missing name, key or attribute is an
error that names it, never an empty string.

Rendering runs in Jinja's immutable sandbox, with guards against resource bombs: ``range`` is
capped, loop iterations over ranges share a budget, repetition/power/format widths are bounded,
and every render has a time limit and an output-size limit (``TemplateLimits``: the governance
policy's ``templates.timeout_seconds`` and ``templates.max_output_bytes``, set for the attempt
being run with ``template_limits``). The time limit is checked at every call, attribute
access, loop iteration and output chunk, so a nested loop or a recursive macro stops within
the limit instead of holding the event loop. Mapping keys win over methods
(``{{ out.items }}`` is the ``items`` key of an HTTP response, not ``dict.items``).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_eval_context,
)
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrion.errors import PermanentNodeError

__all__ = [
    "LIMITS_KEY",
    "MAX_RANGE",
    "MAX_RENDERED_SIZE",
    "RESERVED_NAMES",
    "TemplateInfo",
    "TemplateLimits",
    "build_context",
    "condition_references",
    "evaluate_condition",
    "expression_source",
    "is_template",
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
MAX_POWER_EXPONENT = 10_000
LIMITS_KEY = "template_limits"
"""``Resources.extra`` key of the ``TemplateLimits`` the executor renders an attempt with."""
_MAX_WIDTH_DIGITS = 7  # a format width of 10**7 characters or more is a memory bomb

RESERVED_NAMES = frozenset({"input", "secrets", "nodes", "execution"})
"""Top-level template names that are not node ids (``input`` doubles as a node id, see below)."""

_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_HUGE_WIDTH = re.compile(r"\d{" + str(_MAX_WIDTH_DIGITS) + ",}")
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
        raise SecurityError("secrets cannot be used as a whole; name one: secrets.NAME")

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


@contextlib.contextmanager
def template_limits(limits: TemplateLimits | None) -> Iterator[None]:
    """Render with ``limits`` inside the block (``None``: keep those in force)."""
    if limits is None:
        yield
        return
    token = _LIMITS.set(limits)
    try:
        yield
    finally:
        _LIMITS.reset(token)


@dataclass(slots=True)
class _Budget:
    remaining: int
    deadline: float = float("inf")
    timeout: float = 0.0
    max_bytes: int = MAX_RENDERED_SIZE


_BUDGET: ContextVar[_Budget | None] = ContextVar("orchestrion_template_budget", default=None)


def _tick() -> None:
    """Stop a render that has run past its time limit (called at every sandbox operation)."""
    budget = _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise SecurityError(
            f"rendering took longer than {budget.timeout:g}s (templates.timeout_seconds)"
        )


def _max_size() -> int:
    budget = _BUDGET.get()
    return budget.max_bytes if budget is not None else _LIMITS.get().max_output_bytes


def _byte_size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "replace"))


def _too_large(size: int) -> SecurityError:
    limit = _max_size()
    return SecurityError(
        f"rendered text exceeds {limit} bytes (templates.max_output_bytes), got {size} or more"
    )


def _guard_loop(iterable: Any) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: each item is a time-limit check."""
    for item in iterable:
        _tick()
        yield item


class _CappedRange:
    """``range()`` for templates: at most MAX_RANGE items, and iterating spends the budget."""

    __slots__ = ("_range",)

    def __init__(self, r: range) -> None:
        self._range = r

    def __iter__(self) -> Iterator[int]:
        budget = _BUDGET.get()
        for value in self._range:
            _tick()
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


def _safe_range(*args: int) -> _CappedRange:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items, got {len(r)}")
    return _CappedRange(r)


def _check_width(width: Any) -> None:
    if isinstance(width, int) and abs(width) > _max_size():
        raise SecurityError(f"width {width} exceeds the template size limit")


def _check_format_spec(text: Any) -> None:
    if isinstance(text, str) and _HUGE_WIDTH.search(text):
        raise SecurityError("format width exceeds the template size limit")


def _check_str_method(
    method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Refuse a str method call whose result would break the size limit, before it runs.

    One C call (``'a'.ljust(10**9)``, ``s.replace('a', long)``) can allocate gigabytes before
    any output check sees it. Returns the arguments to call with (``join`` gets a list).
    """
    text: str = method.__self__
    name = getattr(method, "__name__", "")

    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    size: int | None = None
    if name in ("ljust", "rjust", "center", "zfill"):
        width = arg(0, "width")
        size = width if isinstance(width, int) else None
    elif name == "expandtabs":
        tabsize = arg(0, "tabsize", 8)
        if isinstance(tabsize, int):
            size = len(text) + text.count("\t") * max(tabsize, 0)
    elif name == "replace":
        old, new, count = arg(0, "old"), arg(1, "new"), arg(2, "count", -1)
        if isinstance(old, str) and isinstance(new, str) and isinstance(count, int):
            times = text.count(old) if old else len(text) + 1
            if count >= 0:
                times = min(times, count)
            size = len(text) + times * max(len(new) - len(old), 0)
    elif name == "join" and args:
        items = list(args[0])
        args = (items, *args[1:])
        size = sum(len(i) for i in items if isinstance(i, str)) + len(text) * len(items)
    if size is not None and size > _max_size():
        raise SecurityError(
            f"str.{name}() would exceed the template size limit (templates.max_output_bytes)"
        )
    return args


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, str | list | tuple) else None


# --------------------------------------------------------------------------- filters


def _to_plain(value: Any) -> Any:
    """Turn template-side objects (namespaces, capped ranges) into plain JSON-able values."""
    if isinstance(value, _Namespace):
        return value.native()
    if isinstance(value, _CappedRange):
        return list(value)
    if isinstance(value, Undefined):
        # Touching a StrictUndefined raises the error that names the missing thing.
        str(value)
    return value


def _json_default(value: Any) -> Any:
    plain = _to_plain(value)
    if plain is value:
        raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")
    return plain


def _tojson(value: Any, indent: int | None = None) -> str:
    return json.dumps(_to_plain(value), indent=indent, default=_json_default, ensure_ascii=False)


def _fromjson(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        raise TypeError(f"fromjson expects a string, got {type(value).__name__}")
    return json.loads(value)


# --------------------------------------------------------------------------- environment


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus namespace lookups, key-before-method and operator guards."""

    intercepted_binops = frozenset({"*", "**", "%"})

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        ast = super()._parse(source, name, filename)
        # Loops over plain lists call nothing the sandbox sees: give every loop a checkpoint.
        for loop in list(ast.find_all(nodes.For)):
            loop.iter = nodes.Filter(
                loop.iter, _LOOP_GUARD, [], [], None, None, lineno=loop.iter.lineno
            )
        return ast

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        _tick()  # every function and macro call, recursive ones included
        if isinstance(getattr(__obj, "__self__", None), str):
            args = _check_str_method(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        if isinstance(obj, _Namespace):
            return obj.lookup(self, attribute)
        if isinstance(obj, Mapping):
            # Data wins over methods: an API response's "items" field is not dict.items.
            try:
                return obj[attribute]
            except (KeyError, TypeError):
                pass
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        if isinstance(obj, _Namespace):
            return obj.lookup(self, argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(count, int) and size * count > _max_size():
                    raise SecurityError(
                        "repetition exceeds the template size limit (templates.max_output_bytes)"
                    )
        elif operator == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER_EXPONENT:
                raise SecurityError(f"exponent {right} is too large")
        elif operator == "%":
            _check_format_spec(left)
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            # str.format reaches here at attribute access; refuse huge widths before running.
            _check_format_spec(value.__self__)
        return wrapped


def _guarded_filter(name: str, env: _Environment, width_arg: int) -> None:
    original = env.filters[name]

    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > width_arg:
            _check_width(args[width_arg])
        for value in kwargs.values():
            _check_width(value)
        if name == "format" and args:
            _check_format_spec(args[0])
        return original(*args, **kwargs)

    env.filters[name] = guarded


_LOOP_GUARD = "orchestrion_loop_guard"  # a template naming it only iterates more slowly


def _make_environment() -> _Environment:
    env = _Environment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
    env.globals["range"] = _safe_range
    # lipsum(n=10**6) would write megabytes; cycler/joiner are of no use in config values.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters["tojson"] = _tojson
    env.filters["fromjson"] = _fromjson
    env.filters[_LOOP_GUARD] = _guard_loop
    _guarded_filter("center", env, 1)
    _guarded_filter("indent", env, 1)
    _guarded_filter("format", env, 0)
    original_replace = env.filters["replace"]

    @pass_eval_context
    def replace(eval_ctx: Any, value: Any, old: Any, new: Any, count: Any = None) -> Any:
        # The same size check as the str.replace method: one call may allocate gigabytes.
        if isinstance(value, str):
            _check_str_method(value.replace, (old, new, -1 if count is None else count), {})
        return original_replace(eval_ctx, value, old, new, count)

    env.filters["replace"] = replace
    return env


_ENV = _make_environment()


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
    try:
        ast = _ENV.parse(source)
    except TemplateSyntaxError as exc:
        where = f" (template line {exc.lineno})" if "\n" in source.strip() else ""
        return TemplateInfo(error=f"template syntax error: {exc.message}{where}")
    names = frozenset(meta.find_undeclared_variables(ast))
    node_keys: set[str] = set()
    dynamic = False
    input_output = False
    for node in ast.find_all((nodes.Getattr, nodes.Getitem)):
        key: Any
        if isinstance(node, nodes.Getattr):
            target, key = node.node, node.attr
        elif isinstance(node, nodes.Getitem):
            target = node.node
            if not isinstance(node.arg, nodes.Const):
                if isinstance(target, nodes.Name) and target.name == "nodes":
                    dynamic = True
                continue
            key = node.arg.value
        else:
            continue
        if not isinstance(target, nodes.Name):
            continue
        if target.name == "nodes" and "nodes" in names:
            node_keys.add(str(key))
        elif target.name == "input" and "input" in names and key == "output":
            input_output = True
    return TemplateInfo(names, frozenset(node_keys), dynamic, input_output)


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


@lru_cache(maxsize=4096)
def _compiled_expression(expr: str) -> Any:
    return _ENV.compile_expression(expr, undefined_to_none=False)


@lru_cache(maxsize=4096)
def _compiled_template(source: str) -> Any:
    return _ENV.from_string(source)


def _shorten(source: str) -> str:
    if len(source) <= _MAX_SOURCE_IN_MESSAGE:
        return source
    return source[: _MAX_SOURCE_IN_MESSAGE - 3] + "..."


def _template_failure(
    source: str, exc: Exception, context: Mapping[str, Any]
) -> PermanentNodeError:
    if isinstance(exc, TemplateSyntaxError):
        detail = f"syntax error: {exc.message}"
    elif isinstance(exc, TemplateError | SecurityError):
        detail = exc.message or type(exc).__name__
    else:
        detail = f"{type(exc).__name__}: {exc}"
    secrets = context.get("secrets")
    if isinstance(secrets, _Secrets):
        for value in secrets.values_to_hide():
            detail = detail.replace(value, "***")
    return PermanentNodeError(
        f"template error in '{_shorten(source)}': {detail}", category="template"
    )


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
    limits = _LIMITS.get()
    budget = _Budget(
        MAX_RANGE_ITERATIONS,
        time.monotonic() + limits.timeout_seconds,
        limits.timeout_seconds,
        limits.max_output_bytes,
    )
    token = _BUDGET.set(budget)
    try:
        if expr is not None:
            result = _compiled_expression(expr)(**context)
            if isinstance(result, Undefined):
                str(result)  # StrictUndefined raises with the name of what is missing
            result = _to_plain(result)
            if isinstance(result, str) and _byte_size(result) > budget.max_bytes:
                raise _too_large(_byte_size(result))
            _tick()
            return result
        template = _compiled_template(source)
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            _tick()
            size += _byte_size(chunk)
            if size > budget.max_bytes:
                raise _too_large(size)
            parts.append(chunk)
        return "".join(parts)
    except PermanentNodeError:
        raise
    except RecursionError:
        raise _template_failure(
            source, SecurityError("recursion too deep (a macro calling itself?)"), context
        ) from None
    except Exception as exc:
        # Any failure inside a template (missing name, type error, sandbox) is the same
        # permanent node error: rendering it again gives the same result.
        raise _template_failure(source, exc, context) from exc
    finally:
        _BUDGET.reset(token)


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
    result = render_value(expression_source(expr.strip()), context)
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
