"""What one template render may compute and allocate, checked before the work is done.

One Python operation can run for seconds or allocate gigabytes before any time check gets a
chance: ``(9**9999)**999`` multiplies big integers in C, ``[['a'*1000]*100]*100`` builds a
ten-megabyte value in three repetitions, ``{% set b %}{{ a }}{{ a }}{% endset %}`` doubles a
text per level. So every operation the sandbox sees is priced from its operands first:

- integers: no result of more than ``MAX_INT_DIGITS`` decimal digits (``*``, ``**``, ``+``,
  ``int()`` of a long text, ``int.to_bytes``); the estimate is exact enough (bit lengths)
  and costs nothing;
- sizes: no value a template builds (repetition, concatenation, literals, string methods,
  filters, formats) may be larger, as text, than ``templates.max_output_bytes``; sizes are
  measured from the operands (a value's measure is remembered, so a repeated or shared value
  is measured once), never by building the result;
- nesting: built values nest at most ``MAX_VALUE_DEPTH`` levels;
- text produced in all, buffered text of ``{% set %}`` blocks and macros included, at most
  ``EMITTED_FACTOR`` times ``templates.max_output_bytes``.

A value a template only reads (a node output, an input) is not limited; a value built from
it (a copy, a list or mapping holding it) is.
Every check raises ``SecurityError`` with a message that names the limit. The price of each
operator, format and method is worked out in ``templates/operations.py``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

from orchestrion.templates.rendering import _LIMITS, MAX_RANGE_ITERATIONS, MAX_RENDERED_SIZE

__all__ = [
    "EMITTED_FACTOR",
    "MAX_INT_BITS",
    "MAX_INT_DIGITS",
    "MAX_VALUE_DEPTH",
    "Budget",
    "Measure",
    "int_too_large",
]

MAX_INT_DIGITS = 4300
"""Largest integer a template may compute, in decimal digits (Python's own text limit)."""
MAX_VALUE_DEPTH = 100
"""How deeply the lists and mappings a template builds may nest."""
EMITTED_FACTOR = 8
"""All text a render produces (buffers included) is at most this many output limits."""
MAX_INT_BITS = math.ceil(MAX_INT_DIGITS / math.log10(2))
_MEMO_SIZE = 16  # measures kept across operations (values kept alive: keep it small)


class Measure(NamedTuple):
    """A value's size as text (about ``len(str(value))``), nesting depth, element count."""

    size: int
    depth: int
    items: int


_SCALAR = Measure(1, 0, 1)


@dataclass(slots=True)
class Budget:
    """The limits and the running counts of one render."""

    remaining: int = MAX_RANGE_ITERATIONS
    deadline: float = float("inf")
    timeout: float = 0.0
    max_bytes: int = MAX_RENDERED_SIZE
    emitted: int = 0
    # id -> (value, measure): the value is held so that its id cannot be reused meanwhile.
    memo: dict[int, tuple[Any, Measure]] = field(default_factory=dict)


BUDGET: ContextVar[Budget | None] = ContextVar("orchestrion_template_budget", default=None)


def _budget() -> Budget:
    budget = BUDGET.get()
    if budget is None:
        # Outside a render (a filter evaluated ad hoc): the limits in force, a fresh count.
        limits = _LIMITS.get()
        budget = Budget(max_bytes=limits.max_output_bytes, timeout=limits.timeout_seconds)
    return budget


def max_size() -> int:
    return _budget().max_bytes


def tick() -> None:
    """Stop a render that has run past its time limit (called at every sandbox operation)."""
    budget = BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise SecurityError(
            f"rendering took longer than {budget.timeout:g}s (templates.timeout_seconds)"
        )


# --------------------------------------------------------------------------- errors


def too_large(what: str, size: int | None = None) -> SecurityError:
    limit = max_size()
    got = f", about {size} bytes" if size is not None and size < 10 * limit else ""
    return SecurityError(
        f"{what} would exceed the template size limit "
        f"({limit} bytes, templates.max_output_bytes){got}"
    )


def int_too_large(what: str) -> SecurityError:
    return SecurityError(
        f"{what} would have more than {MAX_INT_DIGITS} digits (the template integer limit)"
    )


def _too_deep() -> SecurityError:
    return SecurityError(
        f"values would nest more than {MAX_VALUE_DEPTH} levels deep (the template depth limit)"
    )


# --------------------------------------------------------------------------- measuring


def _int_digits(value: int) -> int:
    return int(abs(value).bit_length() * 0.30103) + 1


def check_int(value: Any, what: str = "an integer") -> None:
    if type(value) is int and value.bit_length() > MAX_INT_BITS:
        raise int_too_large(what)


def measure(value: Any, what: str = "a value") -> Measure:
    """``value``'s measure; raises once it is over the size or depth limit (so the walk
    stops early: at most about ``max_bytes / 3`` elements are visited)."""
    kind = type(value)
    if kind is str or kind is bytes:  # the common cases, without a walk
        return Measure(len(value), 0, 1)
    if kind is int:
        return Measure(_int_digits(value), 0, 1)
    if kind is float or kind is bool or value is None:
        return _SCALAR
    return _Walk(_budget(), what).measure(value, 0)


class _Walk:
    __slots__ = ("budget", "limit", "local", "what")

    def __init__(self, budget: Budget, what: str) -> None:
        self.budget = budget
        self.limit = budget.max_bytes
        self.what = what
        self.local: dict[int, Measure] = {}  # shared values inside this walk

    def measure(self, value: Any, level: int) -> Measure:
        kind = type(value)
        if kind is str or kind is bytes or isinstance(value, str | bytes | bytearray):
            return Measure(len(value), 0, 1)
        if kind is int:
            return Measure(_int_digits(value), 0, 1)
        if kind is bool or value is None or kind is float:
            return _SCALAR
        if isinstance(value, list | tuple | Mapping):
            key = id(value)
            found = self.local.get(key)
            if found is not None:
                return found
            held = self.budget.memo.get(key)
            if held is not None and held[0] is value:
                return held[1]
            if level >= MAX_VALUE_DEPTH:
                raise _too_deep()
            result = self._container(value, level)
            self.local[key] = result
            return result
        if isinstance(value, Namespace):
            attrs = getattr(value, "_Namespace__attrs", {})
            return self.measure(attrs, level)
        return Measure(16, 0, 1)  # an object shown by a short repr

    def _container(self, value: Any, level: int) -> Measure:
        limit = self.limit
        # Each element counts at least 2 (a separator): a long list is refused unwalked.
        if 2 + 2 * len(value) > limit:
            raise too_large(self.what, 2 + 2 * len(value))
        if not isinstance(value, Mapping):
            flat = _flat(value)
            if flat is not None:
                if flat.size > limit:
                    raise too_large(self.what, flat.size)
                return flat
        size, depth, count = 2, 0, 1
        if isinstance(value, Mapping):
            for key, item in value.items():
                k = self.measure(key, level + 1)
                v = self.measure(item, level + 1)
                size += k.size + v.size + 4
                count += k.items + v.items
                depth = max(depth, k.depth, v.depth)
                if size > limit:
                    raise too_large(self.what, size)
        else:
            for item in value:
                m = self.measure(item, level + 1)
                size += m.size + 2
                count += m.items
                depth = max(depth, m.depth)
                if size > limit:
                    raise too_large(self.what, size)
        return Measure(size, depth + 1, count)


_NUMBERS = frozenset({int, float, bool, type(None)})


def _flat(value: list[Any] | tuple[Any, ...]) -> Measure | None:
    """The measure of a list of only strings or only numbers, at C speed; else None."""
    kinds = set(map(type, value))
    if kinds <= {str}:
        return Measure(2 + sum(map(len, value)) + 2 * len(value), 1, 1 + len(value))
    if kinds <= _NUMBERS:
        digits = sum(abs(v).bit_length() for v in value if type(v) is int) * 0.30103
        return Measure(2 + int(digits) + 3 * len(value), 1, 1 + len(value))
    return None


def remember(value: Any, size: int, depth: int, count: int, what: str) -> Any:
    """Check a built ``value``'s measure (computed from its parts) and keep it for later."""
    budget = _budget()
    if size > budget.max_bytes:
        raise too_large(what, size)
    if depth > MAX_VALUE_DEPTH:
        raise _too_deep()
    if isinstance(value, list | tuple | dict):
        memo = budget.memo
        if len(memo) >= _MEMO_SIZE:
            del memo[next(iter(memo))]  # the oldest
        memo[id(value)] = (value, Measure(size, depth, count))
    return value


def checked(value: Any, what: str) -> Any:
    """``value`` once its measure is within the limits (for a value just built)."""
    if type(value) is int:
        check_int(value, what)
        return value
    if isinstance(value, str | bytes):
        if len(value) > max_size():
            raise too_large(what, len(value))
        return value
    if isinstance(value, list | tuple | dict):
        m = measure(value, what)
        return remember(value, m.size, m.depth, m.items, what)
    return value


def collect(iterable: Iterable[Any], what: str) -> list[Any]:
    """``list(iterable)``, stopped as soon as the items are over the size limit."""
    limit = max_size()
    items: list[Any] = []
    size, depth, count = 2, 0, 1
    for item in iterable:
        tick()
        m = measure(item, what)
        size += m.size + 2
        count += m.items
        depth = max(depth, m.depth)
        if size > limit:
            raise too_large(what, size)
        items.append(item)
    return remember(items, size, depth + 1, count, what)  # type: ignore[no-any-return]


_PLAIN = frozenset({str, bytes, int, float, bool, list, tuple, dict, type(None)})


def is_iterator(value: Any) -> bool:
    return type(value) not in _PLAIN and isinstance(value, Iterator)


# --------------------------------------------------------------------------- output


def emit(value: Any) -> None:
    """Count a value a render writes out (buffers included); refuse one over the limit."""
    size = len(value) if type(value) is str else measure(value, "an output value").size
    if size > max_size():
        raise too_large("an output value", size)
    emit_text(size)


def emit_text(size: int) -> None:
    """Count ``size`` bytes of text a render writes out, buffers included."""
    budget = BUDGET.get()
    if budget is None:
        return  # outside a render: nothing accumulates
    budget.emitted += size
    if budget.emitted > EMITTED_FACTOR * budget.max_bytes:
        raise SecurityError(
            f"the template produced more than {EMITTED_FACTOR * budget.max_bytes} bytes of "
            f"text in all ({EMITTED_FACTOR} x templates.max_output_bytes)"
        )
