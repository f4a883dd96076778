"""The filters templates may use, each wrapped in a check before it runs and a size check of
what it returns, and the output finaliser every ``{{ }}`` passes through.

A filter that could take long or build something large on a modest input (``center``,
``wordwrap``, ``join``, ``tojson``...) is priced from its arguments first (``_BEFORE``).
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Sized
from typing import Any

from jinja2 import (
    Environment,
    pass_context,
    pass_environment,
)
from jinja2.exceptions import SecurityError
from jinja2.filters import make_attrgetter
from jinja2.runtime import Context, Undefined
from jinja2.utils import _PassArg
from markupsafe import Markup

from orchestrion.templates.bounds import (
    MAX_INT_DIGITS,
    check_int,
    checked,
    collect,
    emit,
    is_iterator,
    max_size,
    measure,
    tick,
    too_large,
)
from orchestrion.templates.guards import CappedRange
from orchestrion.templates.operations import before_method, check_percent_format
from orchestrion.templates.rendering import (
    _Namespace,
)

__all__ = [
    "finalize",
    "fromjson",
    "guard_filter",
    "striptags",
    "sum_filter",
    "to_plain",
    "tojson",
]


@pass_context
def finalize(context: Context, value: Any) -> Any:
    # Every {{ }} output, buffered ones included; also keeps Jinja from evaluating
    # constant output at compile time, where no limit would apply.
    emit(value)
    return value


# --------------------------------------------------------------------------- filters


def to_plain(value: Any) -> Any:
    """Turn template-side objects (namespaces, capped ranges) into plain JSON-able values."""
    if isinstance(value, _Namespace):
        return value.native()
    if isinstance(value, CappedRange):
        return list(value)
    if isinstance(value, Undefined):
        # Touching a StrictUndefined raises the error that names the missing thing.
        str(value)
    return value


def _json_default(value: Any) -> Any:
    plain = to_plain(value)
    if plain is value:
        raise TypeError(f"object of type {type(value).__name__} is not JSON serialisable")
    return plain


def tojson(value: Any, indent: int | str | None = None) -> str:
    return json.dumps(to_plain(value), indent=indent, default=_json_default, ensure_ascii=False)


def fromjson(value: Any) -> Any:
    if not isinstance(value, str | bytes):
        raise TypeError(f"fromjson expects a string, got {type(value).__name__}")
    return json.loads(value)


@pass_environment
def sum_filter(environment: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
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


def striptags(value: Any) -> str:
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
    m = measure(to_plain(value), "|tojson")
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


def guard_filter(env: Environment, name: str) -> None:
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
