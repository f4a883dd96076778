"""What a node attempt hands the engine, made fit to be stored and answered as JSON.

Everything an attempt produces (its output, its rendered config, its waiting data, its error,
its log lines) is committed with the engine's turn and later sent as UTF-8 JSON. The API
refuses a value it could not store at the door (``safe_data``), but a template or a handler
can make one afterwards, ``{{ '\\ud800' }}`` say. One rule applies to all of them here, at
the attempt's boundary, before the engine sees them:

- a lone surrogate in any text is kept as its six-character escape (``\\ud800``, a
  backslash then the code point, as Python's ``backslashreplace`` writes it): the text is
  kept, readable, and encodable everywhere;
- an output that JSON cannot hold at all (``NaN``, infinity, an integer too long to write,
  nesting too deep to encode) fails the attempt with an ``output`` error naming the node and
  where in the output the value is (``check_output``);
- in the texts kept as text, not JSON (an error's message and traceback, log lines), a NUL
  character is kept as ``\\x00`` as well: PostgreSQL's text cannot hold one (``log_text``);
- an error's message and traceback are kept up to ``max_chars`` characters each (the
  ``node_error_max_chars`` setting), the start of them, with how much was cut
  (``bounded_error``), as log lines are.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from typing import Any, Final

from orchestrion import safe_data
from orchestrion.core.events import ErrorInfo
from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.json_text import quick_encode

__all__ = [
    "DEFAULT_ERROR_CHARS",
    "bounded_error",
    "check_output",
    "escape_text",
    "escaped",
    "json_escaped",
    "log_text",
    "needs_escape",
]

DEFAULT_ERROR_CHARS: Final = 16 * 1024
"""Characters kept of an error's message, and of its traceback (``node_error_max_chars``)."""

_SURROGATE = re.compile("[\ud800-\udfff]")
# json.dumps(value, allow_nan=False), without its set-up per call (``json_text.py``).
_STRICT: Final = quick_encode(json.JSONEncoder(allow_nan=False))
# A lone surrogate in ASCII JSON text (json.dumps escapes every non-ASCII character; a valid
# pair is two escapes too, and is told apart by the full check).
_ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


def escape_text(text: str) -> str:
    """``text`` with each lone surrogate written as its escape (``"\\ud800"``)."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def log_text(text: str) -> str:
    """``text`` as a log line or an error message is kept: ``escape_text``, and each NUL
    written as ``\\x00``."""
    text = escape_text(text)
    if "\x00" in text:
        return text.replace("\x00", "\\x00")
    return text


def needs_escape(value: Any) -> bool:
    """Whether ``value`` holds a lone surrogate in a string or a key (walked without
    recursion)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and escape_text(item) is not item:
                return True
        elif isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and escape_text(key) is not key:
                    return True
                stack.append(child)
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def escaped(value: Any) -> Any:
    """``value`` with every lone surrogate escaped, in strings and keys (a copy where one
    was found; lists and tuples come back as lists, as JSON keeps them)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, dict):
        return {
            escape_text(key) if isinstance(key, str) else key: escaped(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [escaped(item) for item in value]
    return value


def json_escaped(text: str) -> bool:
    """Whether ASCII JSON text ``text`` holds a surrogate escape (maybe of a valid pair)."""
    return _ESCAPED_SURROGATE.search(text) is not None


def check_output(node_id: str, output: Any) -> Any:
    """``output`` as it may be stored: lone surrogates escaped; a value JSON cannot hold
    raises a permanent ``output`` error naming the node and where the value is."""
    if output is None or type(output) in (int, bool):
        return output
    if type(output) is str:
        return escape_text(output)
    try:
        text = _STRICT(output)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PermanentNodeError(
            f"output of node '{node_id}' cannot be stored as JSON: {_why(output, exc)}",
            category=ErrorCategory.OUTPUT,
        ) from exc
    if json_escaped(text) and needs_escape(output):
        return escaped(output)
    return output


def _why(output: Any, exc: BaseException) -> str:
    """What is wrong with ``output`` and where (a JSON pointer), when ``safe_data`` finds it."""
    if isinstance(exc, RecursionError):
        return "arrays and objects nested too deep to encode"
    try:
        safe_data.check(output, max_depth=None)
    except safe_data.UnsafeData as unsafe:
        return f"{unsafe.reason} {unsafe.where}".replace(" at the top level", "")
    return str(exc)


def _cut(text: str, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    cut = len(text) - max_chars
    return f"{text[:max_chars]}… [{cut} characters cut]"


def bounded_error(info: ErrorInfo, max_chars: int = DEFAULT_ERROR_CHARS) -> ErrorInfo:
    """``info`` with its texts escaped and its message and traceback cut at ``max_chars``
    characters each (the start kept, and how many characters were cut said); ``info``
    itself when nothing needed changing."""
    message = _cut(log_text(info.message), max_chars)
    trace = info.traceback
    if trace is not None:
        trace = _cut(log_text(trace), max_chars)
    category = escape_text(info.category)
    kind = None if info.type is None else escape_text(info.type)
    if (
        message is info.message
        and trace is info.traceback
        and category is info.category
        and kind is info.type
    ):
        return info
    return replace(info, message=message, traceback=trace, category=category, type=kind)
