"""Pattern-based masking of personal data in free text and in JSON values.

``Masker`` replaces what looks like personal data with a placeholder naming its kind
(``[email]``, ``[card]``...): e-mail addresses, phone numbers, payment card numbers (only
when the Luhn check passes, so order numbers and timestamps stay readable), IBANs, US social
security numbers, and any configured pattern. ``mask_value`` walks dicts and lists, their
keys included (a mapping keyed by e-mail address is personal data too); two keys that mask to
the same text are both kept, the later ones numbered (``[email]``, ``[email]#2``). Pure
functions: the log filter, the API and the CLI apply them, to what they show.

Identifiers (a UUID in its usual text form, or 32 hex digits: execution, definition and
event ids, trace ids) are never personal data, but their hex digits can hold a run of 13 or
more decimal digits that passes the Luhn check, or a group that looks like an IBAN: the
built-in kinds leave them whole (about one execution id in a thousand was cut into
``...[card]...`` before, in log lines, notices and masked API answers alike). Configured
patterns still see them: a pattern someone wrote for 32-hex tokens keeps masking them.
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
    mod97: bool = False  # an IBAN's checksum confirms the match
    # A cheap test a text must pass for the pattern to be worth running (None: always run).
    gate: str | None = None


# Every built-in kind but e-mail needs two digits in a row (a card's may be spaced or dashed):
# most log lines have neither that nor an "@", and are returned after one C-speed scan
# instead of five regex passes.
_DIGIT_PAIR = re.compile(r"\d[ -]?\d")

# An id the built-in kinds leave whole (its own token: no letter, digit or "@" either side).
_HEX = "[0-9a-fA-F]"
_ID = re.compile(
    rf"(?<![0-9A-Za-z@])({_HEX}{{8}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{4}}-{_HEX}{{12}}"
    rf"|{_HEX}{{32}})(?![0-9A-Za-z@])"
)


BUILTIN_PATTERNS: dict[str, str] = {
    # Letters and digits of any script (josé@exämple.com), a top-level domain of letters.
    "email": r"[\w.%+-]+@[\w.-]+\.[^\W\d_]{2,}",
    # 13-19 digits, optionally grouped by spaces or dashes, or in fours by dots
    # (4111.1111.1111.1111: a timestamp's one dot is not a grouping); confirmed by the Luhn check.
    "card": r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])"
    r"|(?<![\d.])\d{4}(?:\.\d{4}){2,3}(?:\.\d{1,3})?(?![\d.])",
    # Upper case as printed; in lower or mixed case confirmed by the checksum (_IBAN_ANY_CASE).
    "iban": r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b",
    # Dashed or spaced alike (123-45-6789, 123 45 6789).
    "ssn": r"\b\d{3}([- ])\d{2}\1\d{4}\b",
    # International (+country) or grouped national numbers: US (202) 555-0143, 202-555-0143;
    # UK trunk numbers grouped as written, 020 7946 0958, 0161 496 0000, 07700 900123.
    "phone": r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(?\d{1,4}\)?[ .-]?){2,5}\d{2,4}\b"
    r"|\(\d{3}\) ?\d{3}[ .-]\d{4}\b|\b\d{3}[ .-]\d{3}[ .-]\d{4}\b"
    r"|(?<![\w+.-])0(?:\d{2}[ -]\d{4}[ -]\d{4}|\d{3}[ -]\d{3}[ -]\d{4}|\d{3}[ -]\d{6,7}"
    r"|\d{4}[ -]\d{6}|\d{4}[ -]\d{3}[ -]\d{3})(?![\w.-])",
}
_IBAN_ANY_CASE = r"\b[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]{4}){2,7}(?: ?[A-Za-z0-9]{1,3})?\b"
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
        if "iban" in wanted:  # then the same in any case, when its checksum holds
            at = next(i for i, p in enumerate(patterns) if p.name == "iban") + 1
            lower = _Pattern("iban", re.compile(_IBAN_ANY_CASE), mod97=True, gate="digits")
            patterns.insert(at, lower)
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
        # The text between ids (even places) and the ids (odd), once a digit kind runs, and
        # the places of the pieces with two digits in a row (those the digit kinds may match).
        pieces: list[str] | None = None
        digital: list[int] = []
        for pattern in self._patterns:
            if pattern.gate == "digits":
                if pieces is None:
                    pieces = _ID.split(text)
                    digital = [i for i in range(0, len(pieces), 2) if _DIGIT_PAIR.search(pieces[i])]
                for i in digital:
                    pieces[i] = _apply(pattern, pieces[i])
                continue
            if pieces is not None:  # a configured pattern sees the whole text, ids too
                text, pieces = "".join(pieces), None
            if pattern.gate == "@" and "@" not in text:
                continue
            text = _apply(pattern, text)
        return text if pieces is None else "".join(pieces)

    def mask_value(self, value: Any) -> Any:
        """``value`` with every string in it masked, dict keys included (``mask_entries``)."""
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, dict):
            return self.mask_entries([(k, self.mask_value(v)) for k, v in value.items()])
        if isinstance(value, list | tuple):
            return [self.mask_value(v) for v in value]
        return value

    def mask_entries(self, entries: list[tuple[Any, Any]]) -> dict[Any, Any]:
        """A dict of ``entries`` (values as given) with each text key masked. A masked key
        that another key already reads (``[email]`` twice, or a key written ``[email]``) is
        numbered, ``[email]#2``, ``[email]#3``..., so that no entry overwrites another."""
        keys = [self.mask_text(key) if isinstance(key, str) else key for key, _ in entries]
        if all(shown == key for shown, (key, _) in zip(keys, entries, strict=True)):
            return dict(entries)  # nothing masked: the common case
        kept = {key for shown, (key, _) in zip(keys, entries, strict=True) if shown == key}
        shown_dict: dict[Any, Any] = {}
        for shown, (key, value) in zip(keys, entries, strict=True):
            if shown != key and (shown in kept or shown in shown_dict):
                n = 2
                while f"{shown}#{n}" in kept or f"{shown}#{n}" in shown_dict:
                    n += 1
                shown = f"{shown}#{n}"
            shown_dict[shown] = value
        return shown_dict


def _apply(pattern: _Pattern, text: str) -> str:
    if pattern.luhn:
        return pattern.regex.sub(_card_or_keep, text)
    if pattern.mod97:
        return pattern.regex.sub(_iban_or_keep, text)
    return pattern.regex.sub(f"[{pattern.name}]", text)


def _iban_or_keep(match: re.Match[str]) -> str:
    """An IBAN in any case when its check digits hold (ISO 13616: mod 97 gives 1)."""
    text = match.group(0).replace(" ", "").upper()
    moved = text[4:] + text[:4]
    number = "".join(str(int(char, 36)) for char in moved)
    return "[iban]" if int(number) % 97 == 1 else match.group(0)


def _card_or_keep(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card]" if 13 <= len(digits) <= 19 and luhn_valid(digits) else match.group(0)
