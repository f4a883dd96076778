"""The price of one operation before it runs: operators, ``%`` and ``str.format``, and the
methods of texts and integers (``templates/bounds.py`` says which limits hold and why).
"""

from __future__ import annotations

import math
import re
import string
from collections.abc import Iterable, Mapping
from typing import Any

from jinja2.exceptions import SecurityError

from orchestrion.templates.bounds import (
    MAX_INT_BITS,
    Measure,
    check_int,
    collect,
    int_too_large,
    max_size,
    measure,
    too_large,
)

__all__ = ["before_binop", "before_method", "check_percent_format", "check_str_format"]

_MAX_FORMAT_DIGITS = 7  # a width or precision of 10**7 or more is refused outright
_DIGITS = re.compile(r"\d+")
_PERCENT_FIELD = re.compile(
    r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?[a-zA-Z%]", re.ASCII
)


# --------------------------------------------------------------------------- operators


def _sequence(value: Any) -> bool:
    return isinstance(value, str | bytes | list | tuple)


def before_binop(operator: str, left: Any, right: Any) -> Measure | None:
    """Refuse ``left <operator> right`` when its result would break a limit; the result's
    measure when it is a sequence built from the operands, to remember it by."""
    if operator == "*":
        return _repetition(left, right)
    if operator == "**":
        if (
            type(left) is int
            and type(right) is int
            and right > 0
            and abs(left) > 1
            and right * math.log2(abs(left)) > MAX_INT_BITS
        ):
            raise int_too_large(f"{left if abs(left) < 10**6 else 'a number'} ** {right}")
        return None
    if operator == "+" and _sequence(left) and _sequence(right):
        a, b = measure(left, "concatenation"), measure(right, "concatenation")
        size = a.size + b.size
        if size > max_size():
            raise too_large("concatenation", size)
        return Measure(size, max(a.depth, b.depth), a.items + b.items)
    if operator == "%" and isinstance(left, str | bytes):
        check_percent_format(left, right)
    return None


def _repetition(left: Any, right: Any) -> Measure | None:
    if type(left) is int and type(right) is int:
        if left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
            raise int_too_large("a product")
        return None
    for seq, times in ((left, right), (right, left)):
        if _sequence(seq) and isinstance(times, int):
            if times <= 0:
                return None
            if times > max_size():
                raise too_large("repetition")
            m = measure(seq, "repetition")
            size = 2 + (m.size - 2) * times if isinstance(seq, list | tuple) else m.size * times
            if size > max_size():
                raise too_large("repetition", size)
            return Measure(size, m.depth, m.items * times)
    return None


# --------------------------------------------------------------------------- formats


def _widths(spec: str) -> int:
    total = 0
    for digits in _DIGITS.findall(spec):
        if len(digits) >= _MAX_FORMAT_DIGITS:
            raise too_large("a format width")
        total += int(digits)
    return total


def _largest_int(values: Iterable[Any]) -> int:
    return max((abs(v) for v in values if type(v) is int), default=0)


def _arguments(args: Any) -> list[Any]:
    if isinstance(args, Mapping):
        return list(args.values())
    if isinstance(args, tuple):
        return list(args)
    return [args]


def check_percent_format(text: str | bytes, args: Any) -> None:
    """Refuse ``text % args`` when widths, precisions or repeated fields would make it huge."""
    source = text.decode("latin-1") if isinstance(text, bytes) else text
    values = _arguments(args)
    biggest = max((measure(v, "a format").size for v in values), default=0)
    size = len(source)
    for match in _PERCENT_FIELD.finditer(source):
        for part in match.groups():
            if part == "*":
                size += _largest_int(values)
            elif part:
                size += _widths(part)
        size += biggest
        if size > max_size():
            raise too_large("a %-format", size)


def check_str_format(text: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    """Refuse ``text.format(*args, **kwargs)`` likewise.

    A format spec holding replacement fields (``{0:{1}}``, ``{a:>{w}}``) is priced as the
    spec it becomes: each nested field is replaced by its value's text first, so that a
    width given as a string (``'>999999999'``), a float or any other value is counted.
    """
    values = [*args, *kwargs.values()]
    biggest = max((measure(v, "a format").size for v in values), default=0)
    size = 0
    try:
        fields = list(_FORMATTER.parse(text))
    except ValueError:
        return  # malformed: str.format raises its own error
    numbering = _Numbering()
    for literal, name, spec, _ in fields:
        size += len(literal)
        if name is not None:
            numbering.next(name)
            if spec and "{" in spec:
                resolved = _nested_spec(spec, args, kwargs, numbering)
                if resolved is None:
                    return  # a nested field that does not resolve: str.format raises
                spec = resolved
            size += biggest + _widths(spec or "")
        if size > max_size():
            raise too_large("str.format()", size)


_FORMATTER = string.Formatter()
_MAX_NESTED_TEXT = 64  # a nested field fills part of a format spec: a few characters


class _Numbering:
    """Automatic field numbering (``{}``) as ``str.format`` counts it, nested fields too."""

    def __init__(self) -> None:
        self.count = 0

    def next(self, name: str) -> str:
        first = re.split(r"[.\[]", name, maxsplit=1)[0]
        if first:
            return first
        number = str(self.count)
        self.count += 1
        return number


def _nested_spec(
    spec: str, args: tuple[Any, ...], kwargs: Mapping[str, Any], numbering: _Numbering
) -> str | None:
    """The format spec once its nested fields are replaced, or None when one does not
    resolve (a missing argument: the format call fails by itself)."""
    try:
        parts = list(_FORMATTER.parse(spec))
    except ValueError:
        return None
    resolved = ""
    for literal, name, inner_spec, conversion in parts:
        resolved += literal
        if name is None:
            continue
        first = numbering.next(name)
        if "." in name or "[" in name:
            # ``{w.real}``, ``{w[0]}``: a lookup inside a format spec has no use but this.
            raise SecurityError(
                f"a nested format field must name an argument, not a lookup: {{{name}}}"
            )
        try:
            value = args[int(first)] if first.isdigit() else kwargs[first]
        except (IndexError, KeyError, TypeError):
            return None
        resolved += _nested_text(value, conversion, inner_spec or "")
    return resolved


def _nested_text(value: Any, conversion: str | None, spec: str) -> str:
    """The text a nested field puts into a format spec, computed only when it is short."""
    if type(value) not in (int, float, bool, str) or (
        type(value) is str and len(value) > _MAX_NESTED_TEXT
    ):
        raise SecurityError(
            "a nested format field must be a number or a short text "
            f"(at most {_MAX_NESTED_TEXT} characters), got {type(value).__name__}"
        )
    if type(value) is int:
        check_int(value, "a nested format field")
    if _widths(spec) > _MAX_NESTED_TEXT:
        raise too_large("a nested format field")
    try:
        if conversion == "r":
            value = repr(value)
        elif conversion == "a":
            value = ascii(value)
        elif conversion == "s":
            value = str(value)
        return format(value, spec)
    except (ValueError, TypeError):
        return ""  # the real call raises the same error


# --------------------------------------------------------------------------- methods


_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def before_method(method: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Refuse a str/bytes/int method call whose result would break a limit, before it runs.

    One C call (``'a'.ljust(10**9)``, ``s.replace('a', long)``, ``(1).to_bytes(10**9)``)
    can allocate gigabytes before any output check sees it. Returns the arguments to call
    with (an iterator given to ``join`` is collected first, within the limit).
    """
    owner = method.__self__
    name = getattr(method, "__name__", "")

    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    if type(owner) is int:
        if name == "to_bytes":
            length = arg(0, "length", 1)
            if isinstance(length, int) and length > max_size():
                raise too_large("int.to_bytes()")
        return args
    text = owner
    size: int | None = None
    if name in _WIDTH_METHODS:
        width = arg(0, "width")
        size = width if isinstance(width, int) else None
    elif name == "expandtabs":
        tabsize = arg(0, "tabsize", 8)
        if isinstance(tabsize, int):
            size = len(text) + text.count(b"\t" if isinstance(text, bytes) else "\t") * max(
                tabsize, 0
            )
    elif name == "replace":
        old, new, count = arg(0, "old"), arg(1, "new"), arg(2, "count", -1)
        if isinstance(old, str | bytes) and isinstance(new, str | bytes) and isinstance(count, int):
            try:
                times = text.count(old) if old else len(text) + 1
            except TypeError:
                return args  # str and bytes mixed: the call raises its own error
            if count >= 0:
                times = min(times, count)
            size = len(text) + times * max(len(new) - len(old), 0)
    elif name == "join" and args:
        items = args[0] if isinstance(args[0], list | tuple) else collect(args[0], "str.join()")
        args = (items, *args[1:])
        size = measure(items, f"{type(text).__name__}.join()").size + len(text) * len(items)
    elif name == "translate" and args and isinstance(text, str):
        table = args[0]
        values = table.values() if isinstance(table, Mapping) else ()
        longest = max((len(v) for v in values if isinstance(v, str)), default=1)
        size = len(text) * longest
    if size is not None and size > max_size():
        raise too_large(f"{type(text).__name__}.{name}()", size)
    return args
