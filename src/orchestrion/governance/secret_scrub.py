"""The backstop: secret values, and their common transforms, replaced by ``***`` in text.

The rule that keeps secrets out of outputs, errors, events and logs is where they may be
used at all (``definition/secret_flow.py``); this only catches what a downstream echoes back
(an API that repeats the request's headers in its answer or its error). Beside the exact
value it knows the transforms a template or a server most often applies: lower and upper
case, reversed, base64 (standard and URL-safe, with and without padding), percent-encoding,
JSON string escaping, hex, and the value's bytes read as one integer (decimal and hex, big
and little endian: what a template computing ``int(value.encode().hex(), 16)`` would print).
These are defence in depth only: where secrets may be used, nothing can compute with them.
Values shorter than 4 characters are not replaced: they would
blank out ordinary words.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

__all__ = ["MIN_SCRUBBED", "Scrubber"]

MIN_SCRUBBED = 4
MASK = "***"
_MAX_INTEGER_BYTES = 1024  # decimal text of a longer value passes Python's digit limit


def _variants(value: str) -> set[str]:
    raw = value.encode("utf-8")
    found = {
        value,
        value.lower(),
        value.upper(),
        value[::-1],
        quote(value, safe=""),
        quote_plus(value),
        json.dumps(value, ensure_ascii=False)[1:-1],
        json.dumps(value)[1:-1],
        raw.hex(),
        raw.hex().upper(),
    }
    if len(raw) <= _MAX_INTEGER_BYTES:
        for number in (int.from_bytes(raw, "big"), int.from_bytes(raw, "little")):
            found |= {str(number), f"{number:x}", f"{number:X}"}
    for encoded in (base64.b64encode(raw), base64.urlsafe_b64encode(raw)):
        text = encoded.decode("ascii")
        found |= {text, text.rstrip("=")}
    return {v for v in found if len(v) >= MIN_SCRUBBED}


@lru_cache(maxsize=64)
def _patterns(values: tuple[str, ...]) -> tuple[str, ...]:
    found: set[str] = set()
    for value in values:
        if len(value) >= MIN_SCRUBBED:
            found |= _variants(value)
    # Longest first, so that a value containing another is replaced whole.
    return tuple(sorted(found, key=len, reverse=True))


class Scrubber:
    """Replaces the given secret values and their transforms in text and in JSON-like data."""

    __slots__ = ("_patterns",)

    def __init__(self, values: Iterable[str]) -> None:
        self._patterns = _patterns(tuple(sorted(set(values))))

    def __bool__(self) -> bool:
        return bool(self._patterns)

    def text(self, text: str) -> str:
        for pattern in self._patterns:
            if pattern in text:
                text = text.replace(pattern, MASK)
        return text

    def value(self, value: Any) -> Any:
        """``value`` with every string in it (keys included) scrubbed; the same object when
        nothing needed replacing."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            items = [(self.value(k), self.value(v)) for k, v in value.items()]
            if all(a is k and b is v for (a, b), (k, v) in zip(items, value.items(), strict=True)):
                return value
            return dict(items)
        if isinstance(value, list | tuple):
            scrubbed = [self.value(item) for item in value]
            if all(a is b for a, b in zip(scrubbed, value, strict=True)):
                return value
            return scrubbed if isinstance(value, list) else tuple(scrubbed)
        return value
