"""The Jinja2 sandbox that template strings render in, and its guards against resource bombs.

Imported on first need by ``orchestrion.templates`` (the public API), so a workflow without
templates, and every process start, does without importing Jinja2. See that module's
docstring for what templates may do and which limits hold.
"""

from __future__ import annotations

import json
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
from orchestrion.templates import (
    _HUGE_WIDTH,
    _LIMITS,
    _MAX_SOURCE_IN_MESSAGE,
    MAX_POWER_EXPONENT,
    MAX_RANGE,
    MAX_RANGE_ITERATIONS,
    MAX_RENDERED_SIZE,
    TemplateInfo,
    _byte_size,
    _Namespace,
    _Secrets,
)

__all__ = ["analyse", "render"]


# --------------------------------------------------------------------------- guards


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


def analyse(source: str) -> TemplateInfo:
    """Parse ``source`` and report the names it uses or its syntax error."""
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


# --------------------------------------------------------------------------- rendering


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


def render(source: str, expr: str | None, context: Mapping[str, Any]) -> Any:
    """Render ``source`` in the sandbox; ``expr``: its inner expression when ``source`` is
    exactly one ``{{ expr }}`` (the result then keeps its native type)."""
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
