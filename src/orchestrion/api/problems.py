"""Every error answer is an RFC 9457 problem document, and none carries a stack trace.

``install`` registers the handlers: Orchestrion errors (definition issues listed per node and
field, unknown ids, invalid transitions, store failures), request validation errors (listed per
field), HTTP errors (unknown route, wrong method, and the ``ApiProblem`` the API raises itself).
Unexpected exceptions are turned into a bare 500 by the middleware (``internal_error``), which
logs them with the request id: the catch-all must sit outside Starlette's exception layer to
answer instead of re-raising.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from orchestrion.api.context import current_request_id
from orchestrion.api.models import Problem
from orchestrion.engine.deciders import DecisionRefused
from orchestrion.engine.trigger_checks import FROM_NODE, INPUTS, OVERRIDES
from orchestrion.errors import (
    DefinitionError,
    DispatchError,
    ExecutionError,
    ExecutionNotFound,
    HandlerNotFound,
    InvalidTransition,
    OrchestrionError,
    ReservedIdempotencyKey,
    StoreError,
)
from orchestrion.governance.encryption import DecryptionError

__all__ = [
    "PROBLEM_JSON",
    "PROBLEM_REF",
    "ApiProblem",
    "error_responses",
    "install",
    "internal_error",
    "problem_response",
    "problem_schemas",
]

logger = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
_TYPE = "urn:orchestrion:problem:"
_SLUGS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-request",
    429: "rate-limited",
    500: "internal-error",
    503: "unavailable",
}
_INPUT_SOURCES = (INPUTS, OVERRIDES, FROM_NODE)
"""Sources of request content found invalid (422 invalid-input): an unknown node id among
them, which is what the request says, not a conflict with the execution's state. A start
refused for several reasons names each source: "execution inputs and node overrides"."""


class ApiProblem(HTTPException):
    """Raised by the API itself; an ``HTTPException`` so FastAPI passes it through untouched
    (even from inside a body read) to the problem handler."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        title: str | None = None,
        slug: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(status, detail, dict(headers) if headers else None)
        self.title = title
        self.slug = slug
        self.errors = errors


def problem_response(
    status: int,
    detail: str,
    *,
    instance: str,
    title: str | None = None,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A problem document response; the request id comes from the request's context."""
    # A message may quote what a client sent: it must not be the thing that fails to encode.
    detail, instance = _printable(detail), _printable(instance)
    if errors is not None:
        errors = [
            {k: _printable(v) if isinstance(v, str) else v for k, v in item.items()}
            for item in errors
        ]
    body = Problem(
        type=_TYPE + (slug or _SLUGS.get(status, "error")),
        title=title or _phrase(status),
        status=status,
        detail=detail,
        instance=instance,
        request_id=current_request_id(),
        errors=errors,  # validated into ProblemItem
    )
    content = body.model_dump(mode="json", exclude_none=True)
    if errors is not None:
        # Items keep their null members: a definition issue always shows node, field, line.
        content["errors"] = [item.model_dump(mode="json") for item in body.errors or []]
        if all(set(item) <= {"code", "message", "field"} for item in errors):
            for item in content["errors"]:  # a request-field error is {code, message, field}
                item.pop("node"), item.pop("line")
    return JSONResponse(
        content,
        status_code=status,
        headers=dict(headers) if headers else None,
        media_type=PROBLEM_JSON,
    )


def internal_error(instance: str) -> JSONResponse:
    """The answer to an unexpected exception: nothing of it leaks, the request id does."""
    return problem_response(
        500,
        "an unexpected error occurred; the server log has the details under this request id",
        instance=instance,
    )


def _printable(text: str) -> str:
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ------------------------------------------------------------------ handlers


async def _orchestrion_error(request: Request, exc: Exception) -> Response:
    path = request.url.path
    if isinstance(exc, DefinitionError):
        inputs = any(source in _INPUT_SOURCES for source in exc.sources)
        count = len(exc.issues)
        detail = (
            str(exc)
            if count == 1
            else f"{exc.source + ': ' if exc.source else ''}{count} problems, listed in errors"
        )
        return problem_response(
            422,
            detail,
            instance=path,
            title="Invalid input" if inputs else "Invalid workflow definition",
            slug="invalid-input" if inputs else "invalid-definition",
            errors=[issue.to_dict() for issue in exc.issues],
        )
    if isinstance(exc, ReservedIdempotencyKey):  # the header's check refuses it first
        return problem_response(422, str(exc), instance=path, title="Invalid request")
    if isinstance(exc, HandlerNotFound):
        return problem_response(422, str(exc), instance=path, slug="invalid-definition")
    if isinstance(exc, ExecutionNotFound):
        return problem_response(404, str(exc), instance=path)
    if isinstance(exc, DecisionRefused):
        # Two refusals: the caller's key is not among the approvers, or the server has no keys
        # to tell who the caller is; a client tells them apart by the type (its exit code).
        slug = "approvers-unverifiable" if exc.unidentified else "not-an-approver"
        return problem_response(403, str(exc), instance=path, slug=slug)
    if isinstance(exc, InvalidTransition):
        return problem_response(409, str(exc), instance=path, slug="invalid-transition")
    if isinstance(exc, ExecutionError):
        if not request.app.state.ctx.engine_running:
            return problem_response(503, "the engine is shutting down", instance=path)
        return problem_response(409, str(exc), instance=path)
    if isinstance(exc, DecryptionError):
        # The store answers, but this server's key ring cannot open what it holds: the
        # operator's fix (the key named) is safe to say; the value is not.
        logger.error("stored value cannot be decrypted: %s", exc, extra={"path": path})
        return problem_response(
            500, f"a stored value cannot be decrypted: {exc}", instance=path, slug="decryption"
        )
    if isinstance(exc, StoreError):
        logger.error(
            "state store failure",
            exc_info=exc,
            extra={"request_id": current_request_id(), "path": path},
        )
        return problem_response(
            503,
            "the state store is unavailable; the server log has the details",
            instance=path,
        )
    logger.error(
        "unexpected Orchestrion error",
        exc_info=exc,
        extra={"request_id": current_request_id(), "path": path},
    )
    return internal_error(path)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = [
        {
            "code": str(err.get("type", "invalid")),
            "message": str(err.get("msg", "invalid value")),
            "field": ".".join(str(part) for part in err.get("loc", ())) or None,
        }
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"message": "invalid request", "field": None}
    where = f" ({first['field']})" if first["field"] else ""
    return problem_response(
        422,
        f"the request is invalid: {first['message']}{where}",
        instance=request.url.path,
        title="Invalid request",
        errors=errors,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    path = request.url.path
    detail = str(exc.detail)
    if isinstance(exc, ApiProblem):
        return problem_response(
            exc.status_code,
            detail,
            instance=path,
            title=exc.title,
            slug=exc.slug,
            errors=exc.errors,
            headers=exc.headers,
        )
    if exc.status_code == 404 and detail == _phrase(404):
        detail = f"no route matches {request.method} {path}"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        # Starlette names the methods of the first route matching the path only; a path
        # served by several routes (GET and DELETE of an execution) allows all of theirs.
        methods = _allowed_methods(request.app.routes, path)
        allowed = ", ".join(sorted(methods)) if methods else headers.get("allow", "")
        headers = {k: v for k, v in headers.items() if k.lower() != "allow"}
        headers["Allow"] = allowed
        detail = f"method {request.method} is not allowed on {path}; allowed: {allowed}"
    return problem_response(exc.status_code, detail, instance=path, headers=headers)


def _allowed_methods(routes: list[BaseRoute], path: str) -> set[str]:
    methods: set[str] = set()
    for route in routes:
        nested = getattr(route, "original_router", None)  # FastAPI nests included routers
        if nested is not None:
            methods |= _allowed_methods(nested.routes, path)
        elif isinstance(route, Route) and route.methods and route.path_regex.match(path):
            methods |= route.methods
    return methods


async def _queue_error(request: Request, exc: Exception) -> Response:
    """Redis (scale-out's queue) did not answer: 503 like a store outage, one log line."""
    assert isinstance(exc, DispatchError)
    path = request.url.path
    logger.warning(
        "queue unavailable: %s: %s",
        exc.kind,
        exc,
        extra={"request_id": current_request_id(), "path": path},
    )
    return problem_response(
        503,
        "the queue (Redis) is unavailable; try again shortly (the server log has the details)",
        instance=path,
        headers={"Retry-After": "2"},
    )


def install(app: FastAPI) -> None:
    """Register the problem handlers on ``app``."""
    app.add_exception_handler(DispatchError, _queue_error)
    app.add_exception_handler(OrchestrionError, _orchestrion_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)


# ------------------------------------------------------------------ OpenAPI

_DESCRIPTIONS = {
    400: "A required request header is missing, or the path or a query parameter is not "
    "UTF-8 text (or holds control characters)",
    401: "Missing or unknown API key",
    403: "The API key's role does not allow this (or it is not among the approvers)",
    404: "Unknown execution, definition or route, or a node the execution's definition does"
    " not have (checked before the state)",
    409: "The execution's state does not allow this, or the definition version conflicts",
    413: "The request body is too large",
    415: "Unsupported content type",
    422: "Invalid definition, input or request field",
    429: "Rate limited, or the caller's event streams are at their limit; retry after"
    " Retry-After seconds",
    500: "Unexpected server error (no details are disclosed)",
    503: "Degraded: the engine or the state store is unavailable (or the server holds its"
    " limit of open event streams)",
}
_COMMON = (400, 401, 403, 413, 422, 429, 500, 503)
_RATE_LIMIT_HEADERS = {  # set by api/gate.py on every limited answer
    name: {"description": text, "schema": {"type": "integer"}}
    for name, text in (
        ("RateLimit-Limit", "requests the caller may make at once (the burst)"),
        ("RateLimit-Remaining", "requests left at once"),
        ("RateLimit-Reset", "seconds until the caller's bucket is full again"),
    )
}


PROBLEM_REF = "#/components/schemas/Problem"
"""Where the OpenAPI document holds ``Problem``'s schema (``problem_schemas`` adds it)."""


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for the given codes plus those every /v1 route may answer.

    The body is named by reference, not as a ``model``: FastAPI would build a validator of
    ``Problem`` for every code of every route (over a thousand, a third of a server's start),
    only to describe it in the OpenAPI document."""
    responses: dict[int | str, dict[str, Any]] = {}
    for code in sorted({*codes, *_COMMON}):
        entry: dict[str, Any] = {
            "description": _DESCRIPTIONS[code],
            "content": {PROBLEM_JSON: {"schema": {"$ref": PROBLEM_REF}}},
        }
        if code == 429:
            entry["headers"] = {
                "Retry-After": {
                    "description": "seconds to wait before trying again",
                    "schema": {"type": "integer"},
                },
                **_RATE_LIMIT_HEADERS,
            }
        responses[code] = entry
    return responses


def problem_schemas() -> dict[str, Any]:
    """``Problem``'s schema and those it refers to, for the OpenAPI document's components."""
    schema = Problem.model_json_schema(
        ref_template="#/components/schemas/{model}", mode="serialization"
    )
    nested: dict[str, Any] = schema.pop("$defs", {})
    return {"Problem": schema, **nested}
