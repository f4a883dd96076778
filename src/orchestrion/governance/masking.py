"""Pattern-based masking of personal data in free text and in JSON values.

``Masker`` replaces what looks like personal data with a placeholder naming its kind
(``[email]``, ``[card]``...): e-mail addresses, phone numbers, payment card numbers (only
when the Luhn check passes, so order numbers and timestamps stay readable), IBANs, US social
security numbers, and any configured pattern. ``mask_value`` walks dicts and lists; keys are
kept. Pure functions: the log filter, the API and the CLI apply them (issue #6).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BUILTIN_PATTERNS", "MASKING_ORDER", "Masker", "luhn_valid"]


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum of a string of digits (payment card numbers)."""
    total = 0
    for i, char in enumerate(reversed(digits)):
        n = ord(char) - 48
        if i % 2:
            n *= 2
            if n > 9:
                n -= 9
        total += n
    return total % 10 == 0


@dataclass(frozen=True, slots=True)
class _Pattern:
    name: str
    regex: re.Pattern[str]
    luhn: bool = False
    # A cheap test a text must pass for the pattern to be worth running (None: always run).
    gate: str | None = None


# Every built-in kind but e-mail needs two digits in a row (a card's may be spaced or dashed):
# most log lines have neither that nor an "@", and are returned after one C-speed scan
# instead of five regex passes.
_DIGIT_PAIR = re.compile(r"\d[ -]?\d")


BUILTIN_PATTERNS: dict[str, str] = {
    "email": r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}",
    # 13-19 digits, optionally grouped by spaces or dashes; confirmed by the Luhn check.
    "card": r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])",
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
    "ssn": r"\b\d{3}-\d{2}-\d{4}\b",
    # International (+country) or grouped national numbers of 8+ digits.
    "phone": r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,5}\d{2,4}\b"
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}\b|\b\d{3}[ .-]\d{3}[ .-]\d{4}\b",
}
MASKING_ORDER = ("email", "iban", "card", "ssn", "phone")
"""Kinds, in the order they are applied (an IBAN before the digits inside it look like a card)."""


class Masker:
    """Masks the built-in kinds (all, or those named in ``kinds``) and ``extra`` patterns
    (name -> regular expression); a bad expression is a ``ValueError`` naming it."""

    def __init__(
        self, kinds: Iterable[str] | None = None, extra: Mapping[str, str] | None = None
    ) -> None:
        wanted = list(MASKING_ORDER if kinds is None else kinds)
        unknown = [k for k in wanted if k not in BUILTIN_PATTERNS]
        if unknown:
            known = ", ".join(MASKING_ORDER)
            raise ValueError(f"unknown masking kind(s) {', '.join(unknown)} (known: {known})")
        patterns = [
            _Pattern(
                k,
                re.compile(BUILTIN_PATTERNS[k]),
                luhn=k == "card",
                gate="@" if k == "email" else "digits",
            )
            for k in MASKING_ORDER
            if k in wanted
        ]
        for name, expression in (extra or {}).items():
            try:
                patterns.append(_Pattern(name, re.compile(expression)))
            except re.error as exc:
                raise ValueError(f"masking pattern {name!r} is not a valid regex: {exc}") from exc
        self._patterns = patterns
        self._all_gated = all(pattern.gate is not None for pattern in patterns)

    @property
    def builtin_only(self) -> bool:
        """True when only built-in kinds apply (no configured pattern)."""
        return self._all_gated

    def mask_text(self, text: str) -> str:
        if self._all_gated and "@" not in text and _DIGIT_PAIR.search(text) is None:
            return text  # the common case: one scan, no pattern run
        has_digits: bool | None = None
        for pattern in self._patterns:
            if pattern.gate == "@":
                if "@" not in text:
                    continue
            elif pattern.gate == "digits":
                if has_digits is None:
                    has_digits = _DIGIT_PAIR.search(text) is not None
                if not has_digits:
                    continue
            if pattern.luhn:
                text = pattern.regex.sub(_card_or_keep, text)
            else:
                text = pattern.regex.sub(f"[{pattern.name}]", text)
        return text

    def mask_value(self, value: Any) -> Any:
        """``value`` with every string in it masked (dict keys kept)."""
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return {k: self.mask_value(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value


def _card_or_keep(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)
