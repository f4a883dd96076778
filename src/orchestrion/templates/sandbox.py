"""The Jinja2 sandbox that template strings render in, and its guards against resource bombs.

Imported on first need by ``templates.rendering`` (the public API), so a workflow without
templates, and every process start, does without importing Jinja2. See that module's
docstring for what templates may do and which limits hold.
"""

from __future__ import annotations

import functools
import itertools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sized
from functools import lru_cache
from typing import Any, cast

from jinja2 import (
    StrictUndefined,
    TemplateError,
    TemplateSyntaxError,
    meta,
    nodes,
    pass_context,
    pass_environment,
)
from jinja2.exceptions import SecurityError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from orchestrion.errors import PermanentNodeError
from orchestrion.templates.bounds import (
    BUDGET,
    MAX_INT_DIGITS,
    Budget,
    before_binop,
    before_method,
    check_int,
    check_percent_format,
    check_str_format,
    checked,
    collect,
    emit,
    emit_text,
    is_iterator,
    max_size,
    measure,
    remember,
    tick,
    too_large,
)
from orchestrion.templates.rendering import (
    _LIMITS,
    _MAX_SOURCE_IN_MESSAGE,
    MAX_RANGE,
    MAX_RANGE_ITERATIONS,
    TemplateInfo,
    _byte_size,
    _Namespace,
    _Secrets,
)
from orchestrion.templates.secrets import secret_use

__all__ = ["analyse", "render"]


# --------------------------------------------------------------------------- guards


def _guard_loop(iterable: Any) -> Iterator[Any]:
    """Every ``{% for %}`` iterates through this: each item is a time-limit check."""
    for item in iterable:
        tick()
        yield item


class _CappedRange:
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


def _safe_range(*args: int) -> _CappedRange:
    r = range(*args)
    if len(r) > MAX_RANGE:
        raise SecurityError(f"range() is limited to {MAX_RANGE} items, got {len(r)}")
    return _CappedRange(r)


# Names of the guards the parser weaves into every template; a template naming one of them
# only gets the same checks again.
_LOOP_GUARD = "orchestrion_loop_guard"
_CONCAT = "orchestrion_concat"
_BUILT = "orchestrion_built"
_TEXT = "orchestrion_text"


def _guard(node: nodes.Expr, name: str, args: list[nodes.Expr] | None = None) -> nodes.Filter:
    return nodes.Filter(node, name, args or [], [], None, None, lineno=node.lineno)


class _Guards(NodeTransformer):
    """Rewrites a parsed template so that what Jinja would do unseen passes a guard:
    loops over plain lists, ``~`` concatenation, list/tuple/dict literals, and the literal
    text of output statements (counted against the text a render may produce)."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _guard(cast(nodes.Expr, node.iter), _LOOP_GUARD)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        first, *rest = node.nodes
        return _guard(first, _CONCAT, rest)

    def _built(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return _guard(node, _BUILT)

    visit_List = visit_Dict = _built

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        if node.ctx != "load":
            return node  # an assignment target: `{% for k, v in ... %}`
        return self._built(node)

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        self.generic_visit(node)
        text = sum(len(child.data) for child in node.nodes if isinstance(child, nodes.TemplateData))
        if text:
            node.nodes.insert(0, _guard(nodes.Const(text, lineno=node.lineno), _TEXT))
        return node


def _concat(first: Any, *rest: Any) -> str:
    parts = (first, *rest)
    size = sum(measure(part, "concatenation").size for part in parts)
    if size > max_size():
        raise too_large("concatenation", size)
    return "".join(map(str, parts))


def _built(value: Any) -> Any:
    return checked(value, "a literal")


def _text(size: int) -> str:
    emit_text(size)
    return ""


@pass_context
def _finalize(context: Context, value: Any) -> Any:
    # Every {{ }} output, buffered ones included; also keeps Jinja from evaluating
    # constant output at compile time, where no limit would apply.
    emit(value)
    return value


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


def _tojson(value: Any, indent: int | str | None = None) -> str:
    return json.dumps(_to_plain(value), indent=indent, default=_json_default, ensure_ascii=False)


def _fromjson(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        raise TypeError(f"fromjson expects a string, got {type(value).__name__}")
    return json.loads(value)


@pass_environment
def _sum(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """``|sum`` in linear time: lists and tuples are chained, not added one by one (which
    copies the running total at every step)."""
    if attribute is not None:
        iterable = map(make_attrgetter(environment, attribute), iterable)
    items = iterable if isinstance(iterable, list | tuple) else collect(iterable, "|sum")
    if not isinstance(start, list | tuple):
        total = start
        for item in items:
            tick()
            total = total + item
            check_int(total, "|sum")
        return total
    kind = type(start)
    for item in items:
        if type(item) is not kind:
            raise TypeError(f"can only add {kind.__name__} to {kind.__name__} in |sum")
    size = measure(start, "|sum").size + sum(measure(item, "|sum").size for item in items)
    if size > max_size():
        raise too_large("|sum", size)
    return kind(itertools.chain(start, *items))


def _striptags(value: Any) -> str:
    """``|striptags`` in linear time: comments, then tags, cut out in one pass each."""
    text = str(value)
    if len(text) > _SLOW_FILTER_INPUT:
        raise _slow_input("|striptags", len(text))
    for opener, closer in (("<!--", "-->"), ("<", ">")):
        pieces: list[str] = []
        position = 0
        while True:
            start = text.find(opener, position)
            end = text.find(closer, start) if start != -1 else -1
            if end == -1:
                break
            pieces.append(text[position:start])
            position = end + len(closer)
        pieces.append(text[position:])
        text = "".join(pieces)
    return str(Markup(" ".join(text.split())).unescape())


# Pure-Python filters cost about a microsecond per character: bound their input so that
# one call stays well under the time limit, which is checked between calls.
_SLOW_FILTER_INPUT = 100_000
_SLOW_FILTER_ITEMS = 10_000
_MANY = 100_000  # items for sort, dictsort, groupby, unique, min and max


def _slow_input(name: str, size: int) -> SecurityError:
    return SecurityError(
        f"{name} takes at most {_SLOW_FILTER_INPUT} characters, got {size} (a template limit)"
    )


def _text_size(value: Any) -> int | None:
    return len(value) if isinstance(value, str) else None


def _before_slow(name: str) -> Callable[..., None]:
    def before(value: Any = "", *_: Any, **__: Any) -> None:
        size = _text_size(value)
        if size is not None and size > _SLOW_FILTER_INPUT:
            raise _slow_input(name, size)

    return before


def _before_many(name: str) -> Callable[..., None]:
    # Sorting and grouping call back into Python for every item, in one call the time limit
    # cannot interrupt: a node output of millions of items must not reach them whole.
    def before(value: Any = (), *_: Any, **__: Any) -> None:
        if isinstance(value, Sized) and not isinstance(value, str) and len(value) > _MANY:
            raise SecurityError(
                f"{name} takes at most {_MANY} items, got {len(value)} (a template limit)"
            )

    return before


def _before_center(value: Any = "", width: Any = 80, *_: Any, **__: Any) -> None:
    if isinstance(width, int) and width > max_size():
        raise too_large("|center", width)


def _before_indent(s: Any = "", width: Any = 4, *_: Any, **__: Any) -> None:
    if isinstance(s, str):
        prefix = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        size = len(s) + (s.count("\n") + 1) * max(prefix, 0)
        if size > max_size():
            raise too_large("|indent", size)


def _before_wordwrap(
    s: Any = "", width: Any = 79, break_long_words: Any = True, wrapstring: Any = None,
    *_: Any, **__: Any,
) -> None:  # fmt: skip
    _before_slow("|wordwrap")(s)
    if isinstance(s, str) and isinstance(width, int):
        breaks = len(s) // max(width, 1) + s.count("\n") + 1
        size = len(s) + breaks * (len(wrapstring) if isinstance(wrapstring, str) else 1)
        if size > max_size():
            raise too_large("|wordwrap", size)


def _before_fill(name: str) -> Callable[..., None]:
    def before(
        value: Any = None, count: Any = 1, fill_with: Any = None, *_: Any, **__: Any
    ) -> None:
        if not isinstance(count, int):
            return
        if count > max_size():
            raise too_large(name, count)
        if fill_with is not None:
            size = count * (measure(fill_with, name).size + 2)
            if size > max_size():
                raise too_large(name, size)

    return before


def _before_round(value: Any = 0, precision: Any = 0, *_: Any, **__: Any) -> None:
    if isinstance(precision, int) and abs(precision) > MAX_INT_DIGITS:
        raise SecurityError(
            f"|round precision {precision} is beyond {MAX_INT_DIGITS} digits "
            "(the template integer limit)"
        )


def _before_int(value: Any = None, *_: Any, **__: Any) -> None:
    if isinstance(value, str | bytes) and len(value.strip()) > MAX_INT_DIGITS + 2:
        raise SecurityError(
            f"|int of a text of {len(value)} characters: more than {MAX_INT_DIGITS} digits "
            "(the template integer limit)"
        )


def _before_list(value: Any = None, *_: Any, **__: Any) -> None:
    if isinstance(value, str) and 5 * len(value) > max_size():
        raise too_large("|list", 5 * len(value))  # "['a', 'b']": five per character


def _before_join(value: Any = (), d: Any = "", *_: Any, **__: Any) -> None:
    if isinstance(value, list | tuple):
        size = measure(value, "|join").size + len(str(d)) * len(value)
        if size > max_size():
            raise too_large("|join", size)


def _before_tojson(value: Any = None, indent: Any = None, *_: Any, **__: Any) -> None:
    m = measure(_to_plain(value), "|tojson")
    step = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    size = m.size + (m.items * (1 + max(step, 0) * m.depth) if indent is not None else 0)
    if size > max_size():
        raise too_large("|tojson", size)


def _before_pprint(value: Any = None, *_: Any, **__: Any) -> None:
    m = measure(value, "|pprint")
    if m.items > _SLOW_FILTER_ITEMS:
        raise SecurityError(
            f"|pprint takes at most {_SLOW_FILTER_ITEMS} values, got {m.items} (a template limit)"
        )


def _before_string(value: Any = None, *_: Any, **__: Any) -> None:
    measure(value, "|string")


def _before_format(value: Any = "", *args: Any, **kwargs: Any) -> None:
    if isinstance(value, str):
        check_percent_format(value, kwargs or args)


def _before_replace(
    s: Any = "", old: Any = "", new: Any = "", count: Any = None, *_: Any, **__: Any
) -> None:
    # The same size check as the str.replace method: one call may allocate gigabytes.
    if isinstance(s, str):
        before_method(s.replace, (old, new, -1 if count is None else count), {})


_BEFORE: dict[str, Callable[..., None]] = {
    "batch": _before_fill("|batch"),
    "dictsort": _before_many("|dictsort"),
    "groupby": _before_many("|groupby"),
    "max": _before_many("|max"),
    "min": _before_many("|min"),
    "sort": _before_many("|sort"),
    "unique": _before_many("|unique"),
    "center": _before_center,
    "format": _before_format,
    "indent": _before_indent,
    "int": _before_int,
    "join": _before_join,
    "list": _before_list,
    "pprint": _before_pprint,
    "replace": _before_replace,
    "round": _before_round,
    "slice": _before_fill("|slice"),
    "string": _before_string,
    "title": _before_slow("|title"),
    "tojson": _before_tojson,
    "urlencode": _before_slow("|urlencode"),
    "urlize": _before_slow("|urlize"),
    "wordwrap": _before_wordwrap,
}
# Filters that pass an iterator along lazily: the others get it collected first, within
# the size limit (a generator of megabyte strings must not be joined unseen).
_LAZY = frozenset(
    {"map", "select", "reject", "selectattr", "rejectattr", "first", "default", "d", "unique",
     "batch", "attr"}
)  # fmt: skip


def _guarded_filter(env: _Environment, name: str) -> None:
    """Wrap filter ``name``: its check before it runs, the size of what it returns after."""
    original = env.filters[name]
    offset = 0 if _PassArg.from_obj(original) is None else 1  # context/environment first
    before = _BEFORE.get(name)
    lazy = name in _LAZY
    what = f"|{name}"

    @functools.wraps(original)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        tick()
        if not lazy and len(args) > offset and is_iterator(args[offset]):
            args = (*args[:offset], collect(args[offset], what), *args[offset + 1 :])
        if before is not None:
            before(*args[offset:], **kwargs)
        result = original(*args, **kwargs)
        return result if is_iterator(result) else checked(result, what)

    env.filters[name] = guarded


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
        _Guards().visit(source)
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
        finalize=_finalize,
        optimized=False,  # nothing is computed at compile time, outside every limit
    )
    env.globals["range"] = _safe_range
    # lipsum(n=10**6) would write megabytes; cycler/joiner are of no use in config values.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters["tojson"] = _tojson
    env.filters["fromjson"] = _fromjson
    env.filters["sum"] = _sum
    env.filters["striptags"] = _striptags
    for name in list(env.filters):
        _guarded_filter(env, name)
    env.filters[_LOOP_GUARD] = _guard_loop
    env.filters[_CONCAT] = _concat
    env.filters[_BUILT] = _built
    env.filters[_TEXT] = _text
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
        f"template error in '{_shorten(source)}': {detail}", category="template"
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
            result = _to_plain(result)
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
