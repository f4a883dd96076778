"""Instants given as text: epoch seconds or an RFC 3339 date-time (UTC without an offset).

One parser for the API's time filters and the command line's ``--since``/``--until``, so both
accept and refuse the same things: a finite number from 0 to the end of year 9999, or a
date-time whose every part is in range. ``nan``, ``inf``, ``-1``, ``1e308``, month 13 and
the like raise ``ValueError`` with a message that says what was expected.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["MAX_EPOCH", "parse_instant"]

MAX_EPOCH = 253_402_300_799
"""9999-12-31T23:59:59Z, the last second a ``datetime`` can hold."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_JSON_NUMBER = re.compile(r"^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?$")
_RFC3339 = re.compile(
    r"^([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt ]([0-9]{2}):([0-9]{2}):([0-9]{2})(\.[0-9]+)?"
    r"([Zz]|[+-][0-9]{2}:[0-9]{2})?$"
)


def parse_instant(text: str) -> float:
    """Epoch seconds of ``text``; ``ValueError`` saying what was expected."""
    if _JSON_NUMBER.match(text):
        seconds = float(text)
        if not (math.isfinite(seconds) and 0 <= seconds <= MAX_EPOCH):
            raise ValueError(f"epoch seconds must be between 0 and {MAX_EPOCH}")
        return seconds
    match = _RFC3339.match(text)
    if match is None:
        raise ValueError(
            "expected epoch seconds or an RFC 3339 date-time like 2026-12-01T09:30:00Z"
        )
    year, month, day, hour, minute, second = (int(part) for part in match.groups()[:6])
    fraction, offset = match.group(7), match.group(8)
    try:
        zone = UTC if offset is None or offset in "Zz" else _offset(offset)
        moment = datetime(
            year,
            month,
            day,
            hour,
            minute,
            min(second, 59),  # a leap second (60) counts as the second before it
            int((fraction or ".0")[1:7].ljust(6, "0")),
            tzinfo=zone,
        )
    except ValueError as exc:
        raise ValueError(f"not a valid date-time: {exc}") from None
    # Subtraction, not .timestamp(): year 1 at +14:00 would overflow converting to UTC.
    return (moment - _EPOCH).total_seconds()


def _offset(text: str) -> timezone:
    hours, minutes = int(text[1:3]), int(text[4:6])
    if hours > 23 or minutes > 59:
        raise ValueError(f"offset {text} is out of range")
    delta = timedelta(hours=hours, minutes=minutes)
    return timezone(-delta if text[0] == "-" else delta)
