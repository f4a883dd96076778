"""Durations in definitions: ``30``, ``1.5``, ``"250ms"``, ``"30s"``, ``"1h30m"``, ``"PT5M"``.

Everything becomes float seconds. A bad value raises ``ValueError`` with a message that says
what was expected, which pydantic turns into a field error.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator, WithJsonSchema

__all__ = ["Duration", "parse_duration"]

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_COMPOUND = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_ISO = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> float:
    """Return ``value`` as seconds; raise ``ValueError`` naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        seconds = _parse_text(value.strip())
    else:
        raise ValueError("a duration must be a number of seconds or a string like '30s', '5m'")
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise ValueError(f"duration must be a finite number of seconds >= 0, got {value!r}")
    return seconds


def _parse_text(text: str) -> float:
    if not text:
        raise ValueError("empty duration")
    try:
        return float(text)
    except ValueError:
        pass
    iso = _ISO.match(text.upper())
    if iso and text.upper() != "P" and any(iso.groupdict().values()):
        parts = {k: float(v) for k, v in iso.groupdict().items() if v}
        return (
            parts.get("d", 0) * 86400 + parts.get("h", 0) * 3600 + parts.get("m", 0) * 60
        ) + parts.get("s", 0)
    lowered = text.lower().replace(" ", "")
    pos = 0
    total = 0.0
    for match in _COMPOUND.finditer(lowered):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(lowered) or pos == 0:
        raise ValueError(
            f"invalid duration {text!r}: use seconds (30, 1.5) or units ms/s/m/h/d "
            "('250ms', '30s', '5m', '1h30m') or ISO 8601 ('PT5M')"
        )
    return total


# The JSON Schema (workflow files, ``orchestrion schema``) says what a file may hold: seconds or
# a text duration. Validated values serialize as seconds.
_DURATION_SCHEMA = {
    "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "minLength": 1}],
    "description": "seconds (30, 1.5) or '250ms', '30s', '5m', '1h30m', 'PT5M'",
}
Duration = Annotated[
    float, BeforeValidator(parse_duration), WithJsonSchema(_DURATION_SCHEMA, mode="validation")
]
