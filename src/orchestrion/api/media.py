"""The media type of a request's body, and the check that a body, when sent, is JSON."""

from __future__ import annotations

from email.message import Message

from starlette.requests import Request

from orchestrion.api.problems import ApiProblem

__all__ = ["JSON_TYPES", "json_body_only", "media_type"]

JSON_TYPES = ("application/json",)


def media_type(request: Request) -> str | None:
    """The body's media type from ``Content-Type``, lower case, without parameters."""
    value = request.headers.get("content-type")
    if not value:
        return None
    message = Message()
    message["content-type"] = value
    return message.get_content_type().lower()


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
