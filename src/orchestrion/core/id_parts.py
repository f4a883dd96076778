"""Parts of an execution id as people type them: dashes optional.

Execution ids are UUIDs in their usual text form (``8-4-4-4-12`` hex digits), so a dash
stands at a fixed place: after the 8th, 12th, 16th and 20th digit from the start, which is
after the 12th, 16th, 20th and 24th from the end. A part typed without its dashes
(``01a25256f8c3``, copied from a log that prints ids as 32 hex digits), or with some of
them, is laid out as the id holds it: from the start for a prefix, from the end for a
suffix. The stores then compare it with the ids as they are written and keep using their
indexes (the primary key for a prefix, ``id_reversed`` for a suffix): no column of ids
without dashes is needed.

A part that is not hexadecimal, is longer than an id or has a dash where no UUID has one
is left as typed: an id made otherwise (a test's ``run-1``) is still found by its own
characters.
"""

from __future__ import annotations

__all__ = ["id_prefix", "id_suffix"]

_HEX = frozenset("0123456789abcdef")
_DIGITS = 32
_FROM_START = (8, 12, 16, 20)  # digits before each dash
_FROM_END = tuple(_DIGITS - n for n in _FROM_START)  # digits after each dash


def id_prefix(part: str) -> str:
    """``part`` as the start of a UUID's text: its dashes where the id has them."""
    return _laid_out(part, _FROM_START)


def id_suffix(part: str) -> str:
    """``part`` as the end of a UUID's text: its dashes where the id has them."""
    return _laid_out(part[::-1], _FROM_END)[::-1]


def _laid_out(part: str, dashes: tuple[int, ...]) -> str:
    """``part`` read from its first character (a suffix comes reversed), with a dash after
    every count of ``dashes`` digits that more digits follow."""
    digits = part.replace("-", "")
    if not digits or len(digits) > _DIGITS or not set(digits) <= _HEX:
        return part
    seen = 0
    for char in part:  # a dash typed where no UUID has one: not part of such an id
        if char != "-":
            seen += 1
        elif seen not in dashes:
            return part
    out = []
    for n, char in enumerate(digits):
        if n in dashes:
            out.append("-")
        out.append(char)
    return "".join(out)
