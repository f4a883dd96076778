"""Strict decoding of untrusted JSON, and the same checks for values from anywhere else.

Every value that reaches Orchestrion from outside (an API body, a YAML or JSON definition, a
``-i key=value`` on the command line, a dict given to ``orchestrion.run``) ends up stored as
JSON text, rendered by templates and sent to handlers. Some values parse but break one of
those steps later, far from where they came in, and surface as a crash instead of an answer.
``loads`` and ``check`` refuse them at the door, naming where they are (a JSON pointer, and
for a document too deep to parse, a line and column):

- text that is not valid Unicode: a lone surrogate (``"\\ud800"``, or a command-line
  argument that was not UTF-8), which no UTF-8 encoder (the store's, the JSON answer's)
  accepts;
- nesting deeper than ``MAX_DEPTH`` (64) arrays and objects: nothing legitimate is that
  deep, and every recursive step after this one (validation, templates, storage) would pay
  for it, or overflow the stack;
- integers of more than ``MAX_INT_DIGITS`` (100) digits, refused before ``int()`` is asked
  to convert them (Python itself gives up at 4,300 digits, with a ``ValueError``);
- ``NaN`` and ``Infinity``, and numbers so large they overflow to infinity (``1e400``):
  they are not JSON, and a stored one could not be read back by other JSON parsers.

Syntax errors are left to the caller (``json.JSONDecodeError``), which already reports them
with their line; everything above raises ``UnsafeData``, a ``ValueError``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "UnsafeData",
    "check",
    "check_text",
    "loads",
    "refusing_duplicate_keys",
]

MAX_DEPTH = 64
"""Most arrays and objects one value may nest (a scalar at the top level is depth 0)."""
MAX_INT_DIGITS = 100
"""Most decimal digits of an integer (2**63 has 19; a UUID as a number 39)."""
_INT_BOUND = 10**MAX_INT_DIGITS
_MAX_KEY_IN_POINTER = 64


class UnsafeData(ValueError):
    """A value Orchestrion refuses: ``code`` says why, ``pointer`` (a JSON pointer, ``""``
    for the whole value) or ``line``/``column`` (a document too deep to parse) say where."""

    def __init__(
        self,
        reason: str,
        *,
        code: str,
        path: tuple[str | int, ...] = (),
        line: int | None = None,
        column: int | None = None,
    ) -> None:
        self.reason = reason
        self.code = code
        self.path = path
        self.pointer = _pointer(path)
        self.line = line
        self.column = column
        super().__init__(f"{reason} {self.where}")

    @property
    def where(self) -> str:
        """``at /dag/nodes/0/id``, ``at line 3, column 7`` or ``at the top level``."""
        if self.line is not None:
            return f"at line {self.line}, column {self.column}"
        return f"at {self.pointer}" if self.pointer else "at the top level"


class _Refused:
    """What a parse hook leaves in place of a number it refuses; ``check`` reports it."""

    __slots__ = ("code", "reason")

    def __init__(self, reason: str, code: str) -> None:
        self.reason = reason
        self.code = code


def _parse_int(text: str) -> Any:
    if len(text) - text.startswith("-") > MAX_INT_DIGITS:
        return _Refused(f"an integer of more than {MAX_INT_DIGITS} digits", "integer_too_large")
    return int(text)


def _parse_float(text: str) -> Any:
    value = float(text)
    if math.isinf(value):
        return _Refused("a number too large to represent (it overflows to infinity)", "overflow")
    return value


def _parse_constant(text: str) -> Any:
    return _Refused(f"{text} is not a JSON number", "non_finite_number")


def refusing_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An ``object_pairs_hook``: an object with a key given twice is refused by ``check``
    at that key (``{"id": "a", "id": "b"}`` means what the reader decides: one reader takes
    the first, another the last; a proxy that checked one may pass the other on)."""
    found: dict[str, Any] = {}
    for key, value in pairs:
        if key in found:
            value = _Refused(f"the key {key!r} given twice in one object", "duplicate_key")
        found[key] = value
    return found


def loads(
    data: str | bytes,
    *,
    object_pairs_hook: Callable[[list[tuple[str, Any]]], Any] | None = None,
    max_depth: int | None = MAX_DEPTH,
) -> Any:
    """Parse ``data`` (bytes must be UTF-8) as JSON and ``check`` the result.

    Raises ``json.JSONDecodeError`` for a syntax error, ``UnsafeData`` for the rest.
    ``max_depth=None`` leaves the depth to the caller (a definition's limit is the
    governance policy's); nesting too deep for the parser itself is refused all the same.
    """
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            before = bytes(data[: exc.start])
            raise UnsafeData(
                "the text is not UTF-8",
                code="invalid_utf8",
                line=before.count(b"\n") + 1,
                column=exc.start - (before.rfind(b"\n") + 1) + 1,
            ) from None
    else:
        text = data
    try:
        value = json.loads(
            text,
            object_pairs_hook=object_pairs_hook,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
    except RecursionError:
        bound = max_depth if max_depth is not None else MAX_DEPTH
        line, column = _too_deep_at(text, bound)
        raise UnsafeData(
            f"arrays and objects nested more than {bound} levels deep",
            code="too_deep",
            line=line,
            column=column,
        ) from None
    check(value, max_depth=max_depth)
    return value


def _too_deep_at(text: str, bound: int) -> tuple[int, int]:
    """Line and column (1-based) of the bracket that opens level ``bound + 1``."""
    depth = 0
    in_string = escaped = False
    line, start = 1, 0
    for offset, char in enumerate(text):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > bound:
                return line, offset - start + 1
        elif char in "]}":
            depth -= 1
        if char == "\n":
            line, start = line + 1, offset + 1
    return line, 1


def _escape(key: str) -> str:
    # The pointer goes into messages and problem documents: it must be printable itself.
    safe = key.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")
    if len(safe) > _MAX_KEY_IN_POINTER:
        safe = safe[: _MAX_KEY_IN_POINTER - 3] + "..."
    return safe.replace("~", "~0").replace("/", "~1")


def _pointer(path: tuple[str | int, ...]) -> str:
    return "".join(f"/{_escape(part) if isinstance(part, str) else part}" for part in path)


def _text_problem(text: str) -> tuple[str, str] | None:
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        code = ord(text[exc.start])
        return f"text that is not valid Unicode (lone surrogate U+{code:04X})", "invalid_unicode"
    return None


def check_text(text: str) -> None:
    """Raise ``UnsafeData`` if ``text`` holds a lone surrogate."""
    problem = _text_problem(text)
    if problem is not None:
        raise UnsafeData(problem[0], code=problem[1])


def check(value: Any, *, max_depth: int | None = MAX_DEPTH) -> None:
    """Raise ``UnsafeData`` for the first unsafe part of ``value`` (walked without recursion).

    Dicts, lists and tuples are walked; strings, dict keys and numbers are checked; other
    types (a YAML timestamp, say) are left to the caller. ``max_depth=None``: no depth bound.
    """
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        item, path = stack.pop()
        if isinstance(item, str):
            if not item.isascii():
                problem = _text_problem(item)
                if problem is not None:
                    raise UnsafeData(problem[0], code=problem[1], path=path)
        elif isinstance(item, bool) or item is None:
            continue
        elif isinstance(item, int):
            if abs(item) >= _INT_BOUND:
                raise UnsafeData(
                    f"an integer of more than {MAX_INT_DIGITS} digits",
                    code="integer_too_large",
                    path=path,
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise UnsafeData(
                    f"{item} is not a JSON number", code="non_finite_number", path=path
                )
        elif isinstance(item, dict | list | tuple):
            if max_depth is not None and len(path) >= max_depth:
                raise UnsafeData(
                    f"arrays and objects nested more than {max_depth} levels deep",
                    code="too_deep",
                    path=path,
                )
            if isinstance(item, dict):
                for key, child in item.items():
                    if isinstance(key, str):
                        problem = _text_problem(key)
                        if problem is not None:
                            raise UnsafeData(
                                f"a key with {problem[0]}",
                                code=problem[1],
                                path=(*path, key),
                            )
                    stack.append((child, (*path, key if isinstance(key, str) else str(key))))
            else:
                stack.extend((child, (*path, i)) for i, child in enumerate(item))
        elif isinstance(item, _Refused):
            raise UnsafeData(item.reason, code=item.code, path=path)
