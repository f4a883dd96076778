"""Request headers read, and answer headers added, straight on the ASGI lists.

Starlette's ``Headers(scope=scope).get(name)`` copies the header list into a new mapping on
every call and, for a header the request does not carry (most of those the middleware looks
for: ``X-Request-ID``, ``Origin``, ``Sec-Fetch-Site``, ``Transfer-Encoding``...), raises and
catches a ``KeyError``; ``MutableHeaders`` rescans the answer's list for every header it sets.
Each layer of every request paid that several times. These helpers answer the same: the
first value of a name (the server gives header names in lower case, as ASGI requires, and
Starlette compares them as given), latin-1 text; an added header goes where
``MutableHeaders`` would put it.
"""

from __future__ import annotations

from collections.abc import Iterable, MutableMapping
from typing import Any

from starlette.datastructures import MutableHeaders

__all__ = ["RequestHeaders", "add_answer_headers", "header"]

Raw = list[tuple[bytes, bytes]]


def header(scope: MutableMapping[str, Any], name: bytes) -> str | None:
    """The first value of request header ``name`` (lower case), as ``Headers.get`` gives it."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class RequestHeaders:
    """``Headers.get`` of one request's headers, without a copy or an exception."""

    __slots__ = ("_raw",)

    def __init__(self, scope: MutableMapping[str, Any]) -> None:
        self._raw: Iterable[tuple[bytes, bytes]] = scope["headers"]

    def get(self, name: str) -> str | None:
        """The first value of ``name`` (any case), or None."""
        wanted = name.lower().encode("latin-1")
        for key, value in self._raw:
            if key == wanted:
                return str(value.decode("latin-1"))
        return None


def add_answer_headers(
    message: MutableMapping[str, Any],
    replace: Iterable[tuple[bytes, bytes]] = (),
    default: Iterable[tuple[bytes, bytes]] = (),
) -> None:
    """Set each of ``replace`` on an ``http.response.start`` message (as
    ``MutableHeaders.__setitem__``: the value replaces any the answer has), then each of
    ``default`` it does not have (as ``MutableHeaders.setdefault``). Names in lower case."""
    raw: Raw = list(message.get("headers", ()))
    message["headers"] = raw
    present = {key for key, _ in raw}
    for key, value in replace:
        if key in present:
            MutableHeaders(raw=raw)[key.decode("latin-1")] = value.decode("latin-1")
        else:
            raw.append((key, value))
            present.add(key)
    for key, value in default:
        if key not in present:
            raw.append((key, value))
            present.add(key)
