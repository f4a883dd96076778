"""The one place request input is made safe before any route, dependency or log reads it.

An ASGI middleware, innermost (inside ``RequestMiddleware``, ``AuditMiddleware`` and the
gate: the request id, the body size limit, the caller's key and rate limit come first, so an
unauthenticated request never gets its body parsed), that refuses, with a problem document
naming the place:

- a path or query string that is not UTF-8 once percent-decoded, or holds a control
  character (NUL included: PostgreSQL cannot compare with it): 400 naming the parameter (the
  server would otherwise replace the bytes with U+FFFD and look up something nobody asked
  for). The OpenAPI document declares the same rule as a ``pattern`` on every path and query
  text parameter (``declare_text_parameters``). Header values need no such rule: they are
  read as Latin-1, which any byte is, and the gate and the role checks come first;
- a JSON body (``application/json``, ``*+json``, or no content type, which the API reads
  as JSON) that ``orchestrion.safe_data.loads`` refuses: not UTF-8, a lone surrogate,
  nesting beyond 64 levels, an integer of more than 100 digits, NaN or Infinity, a key
  given twice in one object (outside a definition, whose loader names it with its line): 422 with
  the JSON pointer (or line and column) in ``errors[].field``. A definition's nesting is
  bounded by the governance policy instead (``definitions.max_nesting_depth``, checked by
  the loader), so the submit route's body is not held to 64 here.

A body with a plain syntax error is passed on: the route reports it as it always has (a
definition's issue with its line, FastAPI's ``json_invalid``). YAML and plain-text
definitions are checked by the definition loader, which applies the same rules.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion import safe_data
from orchestrion.api.media import media_type_of
from orchestrion.api.problems import problem_response
from orchestrion.api.raw_headers import header
from orchestrion.api.surfaces import DEFINITION_PATHS

__all__ = ["TEXT_PATTERN", "SafeInputMiddleware", "declare_text_parameters"]

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # tab is allowed, as in HTTP itself
TEXT_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"
"""What a path or query parameter may hold (declared in the OpenAPI document)."""
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_MAX_NAME_IN_MESSAGE = 64
_INLINE_BYTES = 64 * 1024  # parsed on the event loop up to this size (a few ms at most)
# Bodies found acceptable lately, by their exact bytes: a client that sends the same
# definition with every run (the route's definition cache skips its own parse of it too)
# does not have it parsed again here. The same bytes get the same verdict.
_PASSED_KEPT = 64
_PASSED_MAX_BYTES = 16 * 1024


@functools.lru_cache(maxsize=256)
def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # the API reads a body without a content type as JSON
    media = media_type_of(content_type)
    return media == "application/json" or media.endswith("+json")


def _text(raw: bytes) -> str | None:
    """``raw`` as UTF-8 text without control characters, or None."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return None if _CONTROL.search(text) else text


def _printable(raw: bytes) -> str:
    text = raw.decode("utf-8", "backslashreplace")
    text = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return text if len(text) <= _MAX_NAME_IN_MESSAGE else text[: _MAX_NAME_IN_MESSAGE - 3] + "..."


def _query_problem(query: bytes) -> tuple[str, str] | None:
    """(field, message) for the first query parameter that is not clean UTF-8 text."""
    for part in query.split(b"&"):
        if not part:
            continue
        name, _, value = part.partition(b"=")
        raw_name = unquote_to_bytes(name.replace(b"+", b" "))
        raw_value = unquote_to_bytes(value.replace(b"+", b" "))
        if _text(raw_name) is None:
            return _printable(raw_name), "a query parameter name is not UTF-8 text"
        if _text(raw_value) is None:
            field = raw_name.decode("utf-8")
            return field, f"query parameter {field!r} is not UTF-8 text without control characters"
    return None


class SafeInputMiddleware:
    """400 for a path or query that is not clean UTF-8 text; 422 for an unsafe JSON body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._passed: dict[tuple[bool, bytes], None] = {}  # see _PASSED_KEPT

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        refusal = self._request_line_problem(scope)
        if refusal is not None:
            field, message = refusal
            item = {"code": "invalid_text", "message": message, "field": field}
            response = problem_response(400, message, instance=_safe_path(scope), errors=[item])
            await response(scope, receive, send)
            return
        if scope.get("method") not in _BODY_METHODS or not _is_json(header(scope, b"content-type")):
            await self.app(scope, receive, send)
            return
        try:
            body, more = await _read_body(receive)
        except HTTPException as exc:  # the size limit of RequestMiddleware
            response = problem_response(exc.status_code, str(exc.detail), instance=path)
            await response(scope, receive, send)
            return
        definition = path in DEFINITION_PATHS
        if body and not more and (definition, body) not in self._passed:
            try:
                # A definition's duplicate keys are issues of the definition, with their line.
                pairs = None if definition else safe_data.refusing_duplicate_keys
                parse = functools.partial(
                    safe_data.loads,
                    object_pairs_hook=pairs,
                    max_depth=None if definition else safe_data.MAX_DEPTH,
                )
                if len(body) > _INLINE_BYTES:  # a large body: keep the event loop free
                    await asyncio.to_thread(parse, body)
                else:
                    parse(body)
            except json.JSONDecodeError:
                pass  # the route reports syntax errors its own way, with the line
            except safe_data.UnsafeData as exc:
                detail = f"the JSON body is not acceptable: {exc}"
                place = exc.pointer or None
                if exc.line is not None:
                    place = f"line {exc.line}, column {exc.column}"
                errors: list[dict[str, Any]] = [
                    {"code": exc.code, "message": str(exc), "field": place}
                ]
                response = problem_response(
                    422, detail, instance=path, title="Invalid JSON", slug="invalid-json",
                    errors=errors,
                )  # fmt: skip
                await response(scope, receive, send)
                return
            else:
                self._remember(definition, body)
        await self.app(scope, _replay(body, more, receive), send)

    def _remember(self, definition: bool, body: bytes) -> None:
        if len(body) > _PASSED_MAX_BYTES:
            return
        passed = self._passed
        if len(passed) >= _PASSED_KEPT:
            del passed[next(iter(passed))]
        passed[(definition, body)] = None

    @staticmethod
    def _request_line_problem(scope: Scope) -> tuple[str, str] | None:
        raw_path = scope.get("raw_path")
        if isinstance(raw_path, bytes) and _text(unquote_to_bytes(raw_path)) is None:
            return "path", "the path is not UTF-8 text without control characters"
        problem = _query_problem(scope.get("query_string", b""))
        if problem is not None:
            return problem
        return None


def declare_text_parameters(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the rule the middleware enforces to every text parameter of an OpenAPI document
    that has no grammar of its own (pattern, format or enum)."""
    for operations in schema.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                where = parameter.get("in")
                if where in ("path", "query"):
                    _add_pattern(parameter.get("schema", {}), TEXT_PATTERN)
    return schema


def _add_pattern(schema: dict[str, Any], pattern: str) -> None:
    for branch in schema.get("anyOf", []):
        _add_pattern(branch, pattern)
    items = schema.get("items")
    if isinstance(items, dict):
        _add_pattern(items, pattern)
    if schema.get("type") == "string" and not {"pattern", "format", "enum"} & set(schema):
        schema["pattern"] = pattern


def _safe_path(scope: Scope) -> str:
    raw_path = scope.get("raw_path")
    if isinstance(raw_path, bytes):
        return raw_path.decode("ascii", "backslashreplace")
    return str(scope.get("path", "")).encode("utf-8", "backslashreplace").decode("utf-8")


async def _read_body(receive: Receive) -> tuple[bytes, bool]:
    """The whole body; ``more`` is True when the client went away before its end."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b"".join(chunks), True
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks), False


def _replay(body: bytes, disconnected: bool, receive: Receive) -> Receive:
    """``receive`` that hands the body read already back once, then the real messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if replayed or disconnected:
            return await receive() if not disconnected else {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay
