"""The Jinja2 sandbox that template strings render in, and its guards against resource bombs.

Imported on first need by ``templates.rendering`` (the public API), so a workflow without
templates, and every process start, does without importing Jinja2. See that module's
docstring for what templates may do and which limits hold. The guards woven into each
parsed template are ``templates/guards.py``, the filters and their checks
``templates/filters.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
)
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.templates.bounds import (
    BUDGET,
    Budget,
    checked,
    collect,
    is_iterator,
    remember,
    tick,
)
from orchestrion.templates.filters import (
    finalize,
    fromjson,
    guard_filter,
    striptags,
    sum_filter,
    to_plain,
    tojson,
)
from orchestrion.templates.guards import (
    BUILT,
    CONCAT,
    LOOP_GUARD,
    TEXT,
    Guards,
    guard_built,
    guard_concat,
    guard_loop,
    guard_text,
    safe_range,
)
from orchestrion.templates.operations import before_binop, before_method, check_str_format
from orchestrion.templates.rendering import (
    _LIMITS,
    _MAX_SOURCE_IN_MESSAGE,
    MAX_RANGE_ITERATIONS,
    TemplateInfo,
    _byte_size,
    _Namespace,
    _Secrets,
)
from orchestrion.templates.secrets import secret_use

__all__ = ["analyse", "render"]


# --------------------------------------------------------------------------- environment


class _Environment(ImmutableSandboxedEnvironment):
    """The sandbox, plus namespace lookups, key-before-method and the bounds of
    ``orchestrion.templates.bounds`` on every operator, call, filter and output."""

    intercepted_binops = frozenset({"*", "**", "%", "+", "-", "/", "//"})

    def _generate(
        self,
        source: nodes.Template,
        name: str | None,
        filename: str | None,
        defer_init: bool = False,
    ) -> str:
        # Every compiled tree, templates and compile_expression's alike, gets the guards.
        Guards().visit(source)
        return super()._generate(source, name, filename, defer_init)

    def call(
        __self,
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        tick()  # every function and macro call, recursive ones included
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | bytes) or type(owner) is int:
            args = before_method(__obj, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        if is_iterator(result):
            return result
        return checked(result, f"{getattr(__obj, '__name__', 'a call')}()")

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
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
        tick()
        if isinstance(obj, _Namespace):
            return obj.lookup(self, argument)
        return super().getitem(obj, argument)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        built = before_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        if built is not None:
            return remember(result, built.size, built.depth, built.items, operator)
        return checked(result, f"'{operator}'")

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        text: str = value.__self__
        is_map = value.__name__ == "format_map"

        def checked_format(*args: Any, **kwargs: Any) -> str:
            # Priced before it runs: widths, nested widths and repeated fields.
            if is_map and len(args) == 1:
                mapping = args[0]
                values = mapping if isinstance(mapping, Mapping) else {"": mapping}
                check_str_format(text, (), values)
            else:
                check_str_format(text, args, kwargs)
            return wrapped(*args, **kwargs)

        return checked_format


def _make_environment() -> _Environment:
    env = _Environment(
        undefined=StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize,
        optimized=False,  # nothing is computed at compile time, outside every limit
    )
    env.globals["range"] = safe_range
    # lipsum(n=10**6) would write megabytes; cycler/joiner are of no use in config values.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters["tojson"] = tojson
    env.filters["fromjson"] = fromjson
    env.filters["sum"] = sum_filter
    env.filters["striptags"] = striptags
    for name in list(env.filters):
        guard_filter(env, name)
    env.filters[LOOP_GUARD] = guard_loop
    env.filters[CONCAT] = guard_concat
    env.filters[BUILT] = guard_built
    env.filters[TEXT] = guard_text
    return env


_ENV = _make_environment()
_UNSUPPORTED = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)
# Statements the code generator checks further; plain expressions need no compiling here.
_COMPILE_CHECKED = (nodes.For, nodes.Macro, nodes.CallBlock, nodes.Block)


# --------------------------------------------------------------------------- analysis


def analyse(source: str) -> TemplateInfo:
    """Parse and compile ``source``; report the names it uses or why it cannot run.

    Compiling finds what parsing lets through: an unknown filter (``x | nosuchfilter``) or
    test (``x is nosuchtest``) is a ``TemplateAssertionError`` of the code generator.
    Including, importing or extending another template cannot work (there are no template
    files), and an expression nested thousands deep exhausts the parser's recursion.
    """
    multiline = "\n" in source.strip()
    try:
        ast = _ENV.parse(source)
        unsupported = next(iter(ast.find_all(_UNSUPPORTED)), None)
        if unsupported is not None:
            where = f" (template line {unsupported.lineno})" if multiline else ""
            keyword = type(unsupported).__name__.lower().replace("fromimport", "from")
            return TemplateInfo(
                error=f"template error: '{keyword}' is not supported, a config template "
                f"cannot use other templates{where}"
            )
        for used in ast.find_all((nodes.Filter, nodes.Test)):
            # Stricter than the compiler, which lets an unknown name through inside an
            # `if` and fails only when that branch runs.
            known = _ENV.filters if isinstance(used, nodes.Filter) else _ENV.tests
            if used.name not in known:
                kind = "filter" if isinstance(used, nodes.Filter) else "test"
                where = f" (template line {used.lineno})" if multiline else ""
                return TemplateInfo(error=f"template error: no {kind} named {used.name!r}{where}")
        if next(iter(ast.find_all(_COMPILE_CHECKED)), None) is not None:
            _ENV.compile(ast)  # the code generator's own checks (loop, caller, blocks)
    except TemplateSyntaxError as exc:  # TemplateAssertionError included
        where = f" (template line {exc.lineno})" if multiline else ""
        kind = "syntax error" if type(exc) is TemplateSyntaxError else "error"
        return TemplateInfo(error=f"template {kind}: {exc.message}{where}")
    except (RecursionError, MemoryError, SyntaxError, ValueError, OverflowError) as exc:
        # RecursionError: nested too deep to parse; the rest come from Python's compiler
        # (too many nested blocks, a literal it cannot hold).
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        return TemplateInfo(error=f"template error: {detail}")
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
        use = secret_use(source)
        if use.reads:
            # Never a message: one computed while a secret was in reach can be made to spell
            # it out. The kind alone cannot vary with a secret's value where secrets are only
            # interpolated (the rule of definition/secret_flow.py); the names of missing
            # secrets come from the source and the configured names, not from any value.
            detail = f"{type(exc).__name__} (message withheld: the template reads secrets)"
            missing = sorted(name for name in use.names if not secrets.has(name))
            if missing and isinstance(exc, UndefinedError):
                detail += f"; secrets not configured: {', '.join(missing)}"
        for value in secrets.values_to_hide():
            detail = detail.replace(value, "***")
    return PermanentNodeError(
        f"template error in '{_shorten(source)}': {detail}", category=ErrorCategory.TEMPLATE
    )


def render(source: str, expr: str | None, context: Mapping[str, Any]) -> Any:
    """Render ``source`` in the sandbox; ``expr``: its inner expression when ``source`` is
    exactly one ``{{ expr }}`` (the result then keeps its native type)."""
    secrets = context.get("secrets")
    if isinstance(secrets, _Secrets) and secrets.longest() and "secrets" in source:
        use = secret_use(source)
        if use.reads and not use.computed:
            # Only interpolated: whether the render fits the size limit must not depend on
            # how long the secrets are (a length oracle). It is decided with every secret
            # empty; the real render may then exceed the limit by the secrets alone.
            _render(source, expr, {**context, "secrets": secrets.emptied()}, 0)
            extra = source.count("secrets") * secrets.longest()
            return _render(source, expr, context, extra)
    return _render(source, expr, context, 0)


def _render(source: str, expr: str | None, context: Mapping[str, Any], extra: int) -> Any:
    """``render`` with ``extra`` bytes allowed beyond the output limit."""
    limits = _LIMITS.get()
    budget = Budget(
        MAX_RANGE_ITERATIONS,
        time.monotonic() + limits.timeout_seconds,
        limits.timeout_seconds,
        limits.max_output_bytes + extra,
    )
    token = BUDGET.set(budget)
    try:
        if expr is not None:
            result = _compiled_expression(expr)(**context)
            if isinstance(result, Undefined):
                str(result)  # StrictUndefined raises with the name of what is missing
            if is_iterator(result):
                # A lazy value (``map``, ``select``) is collected here, within the limits,
                # not later by whoever reads the config.
                result = collect(result, "the result")
            result = to_plain(result)
            if isinstance(result, str) and _byte_size(result) > budget.max_bytes:
                raise _too_large(_byte_size(result), budget.max_bytes)
            tick()
            return result
        template = _compiled_template(source)
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            tick()
            size += _byte_size(chunk)
            if size > budget.max_bytes:
                raise _too_large(size, budget.max_bytes)
            parts.append(chunk)
        return "".join(parts)
    except PermanentNodeError:
        raise
    except RecursionError:
        raise _template_failure(
            source, SecurityError("recursion too deep (a macro calling itself?)"), context
        ) from None
    except MemoryError:
        raise _template_failure(
            source, SecurityError("the template ran out of memory"), context
        ) from None
    except Exception as exc:
        # Any failure inside a template (missing name, type error, sandbox) is the same
        # permanent node error: rendering it again gives the same result.
        raise _template_failure(source, exc, context) from exc
    finally:
        BUDGET.reset(token)


def _too_large(size: int, limit: int) -> SecurityError:
    return SecurityError(
        f"rendered text exceeds {limit} bytes (templates.max_output_bytes), got {size} or more"
    )
