"""Query parameters that are times, durations, cursors and event types: one grammar each,
declared in the OpenAPI document exactly as the server enforces it.

- An *instant* (``since``, ``until``, ``created_after``, ``created_before``) is epoch seconds
  (a JSON number from 0 to 253402300799, the end of year 9999), an RFC 3339 date-time
  (``2026-12-01T09:30:00Z``, any offset), or the same without an offset, taken as UTC
  (``2026-12-01T09:30:00``). Anything else, ``nan``, ``inf``, ``-1`` or ``1e308`` included,
  is a 422 naming the parameter.
- A *duration* (``older_than``) is seconds (``90``, ``1.5``), units (``30d``, ``1h30m``,
  ``250ms``) or ISO 8601 (``P30D``, ``PT12H``), each number of at most 12 digits: the
  pattern leaves no room for a sign, an exponent, ``inf`` or ``nan``.
- A *cursor* is what ``next_cursor`` gave out: base64url text.
- An *event type* is dotted lowercase words (``node.completed``).
"""

from __future__ import annotations

from typing import Any

from fastapi import Query

from orchestrion import instants
from orchestrion.api.problems import ApiProblem

__all__ = [
    "CURSOR_PATTERN",
    "DURATION_PATTERN",
    "EVENT_TYPE_PATTERN",
    "MAX_EPOCH",
    "instant_query",
    "invalid_field",
    "parse_instant",
]

MAX_EPOCH = instants.MAX_EPOCH
# The offset-less form as the document states it: every string it matches is a real time.
_NAIVE = (
    r"^(?:000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(?:0[1-9]|1[0-2])"
    r"-(?:0[1-9]|1[0-9]|2[0-8])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?$"
)

_N = r"[0-9]{1,12}(?:\.[0-9]{1,9})?"
_TIME = rf"T(?:{_N}H(?:{_N}M)?(?:{_N}S)?|{_N}M(?:{_N}S)?|{_N}S)"
DURATION_PATTERN = rf"^(?:{_N}|(?:{_N}(?:ms|s|m|h|d))+|P(?:{_N}D(?:{_TIME})?|{_TIME}))$"
CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,1024}$"
EVENT_TYPE_PATTERN = r"^[a-z][a-z_]*(?:\.[a-z_]+)+$"

INSTANT_SCHEMA: dict[str, Any] = {
    "anyOf": [
        {"type": "number", "minimum": 0, "maximum": MAX_EPOCH},
        {"type": "string", "format": "date-time"},
        {"type": "string", "pattern": _NAIVE},
    ]
}


def instant_query(description: str) -> Any:
    """``Query`` of an instant parameter (declared as ``str | None``; see ``parse_instant``)."""
    return Query(
        description=f"{description}: epoch seconds, or an RFC 3339 date-time (UTC when it has "
        "no offset)",
        json_schema_extra=INSTANT_SCHEMA,
    )


def invalid_field(name: str, message: str, code: str = "invalid_value") -> ApiProblem:
    """The 422 problem of one invalid request field, shaped like FastAPI's own."""
    return ApiProblem(
        422,
        f"the request is invalid: {message} ({name})",
        title="Invalid request",
        slug="invalid-request",
        errors=[{"code": code, "message": message, "field": name}],
    )


def parse_instant(value: str | None, name: str) -> float | None:
    """Epoch seconds of an instant parameter; a 422 naming ``name`` when it is not one."""
    if value is None:
        return None
    try:
        return instants.parse_instant(value)
    except ValueError as exc:
        raise invalid_field(name, str(exc)) from None
