"""The media type of a request's body, and the check that a body, when sent, is JSON."""

from __future__ import annotations

import functools
from email.message import Message

from starlette.requests import Request

from orchestrion.api.problems import ApiProblem
from orchestrion.api.raw_headers import header

__all__ = ["JSON_TYPES", "json_body_only", "media_type", "media_type_of"]

JSON_TYPES = ("application/json",)


def media_type(request: Request) -> str | None:
    """The body's media type from ``Content-Type``, lower case, without parameters."""
    value = header(request.scope, b"content-type")
    if not value:
        return None
    return media_type_of(value)


def media_type_of(value: str) -> str:
    """The media type a ``Content-Type`` value names, lower case, without parameters."""
    if len(value) > _KEPT_CHARS:
        return _parsed(value)
    return _parsed_kept(value)


def _parsed(value: str) -> str:
    message = Message()
    message["content-type"] = value
    return message.get_content_type().lower()


# A client sends the same few values again and again: each parsed once (a parse is a few
# microseconds, and a request asked twice). Bounded, and short values only.
_KEPT_CHARS = 256
_parsed_kept = functools.lru_cache(maxsize=64)(_parsed)


def json_body_only(request: Request) -> None:
    """A body, when there is one, must be JSON (415 otherwise)."""
    media = media_type(request)
    if media is None or media in JSON_TYPES or media.endswith("+json"):
        return
    if request.headers.get("content-length") in (None, "0") and not request.headers.get(
        "transfer-encoding"
    ):
        return  # no body: the content type does not matter
    raise ApiProblem(415, f"unsupported content type {media!r}: send application/json")
