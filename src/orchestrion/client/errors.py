"""What the client raises, and how an HTTP error response becomes one of these.

    OrchestrionError
    └── ApiError                   status, title, detail, type, request_id, problem
        ├── ApiConnectionError     the server could not be reached (the URL is named)
        │   └── ApiTimeout         connected, but no answer in time
        ├── BadRequest             400, e.g. a required header is missing
        ├── Unauthorized           401, no or unknown API key
        ├── Forbidden              403, the key's role may not do this
        ├── NotFound               404, also an ``ExecutionNotFound``
        ├── Conflict               409, also an ``InvalidTransition``
        ├── PayloadTooLarge        413
        ├── UnsupportedMediaType   415
        ├── InvalidRequest         422, ``errors`` lists every problem
        │   └── InvalidDefinition  also a ``DefinitionError``: ``issues`` name node, field, line
        ├── RateLimited            429, ``retry_after`` seconds
        └── ServerError            5xx
            └── ServiceUnavailable 503

Because ``NotFound``, ``Conflict`` and ``InvalidDefinition`` also derive from the engine's
errors, code written against the embedded engine (``except ExecutionNotFound``) handles a
remote server the same way. A 422 carrying definition issues (``node``/``line`` keys) is an
``InvalidDefinition``; one carrying only request-field errors stays an ``InvalidRequest``.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from orchestrion.core.events import retry_after_seconds
from orchestrion.errors import (
    DefinitionError,
    DefinitionIssue,
    ExecutionNotFound,
    InvalidTransition,
    OrchestrionError,
)

__all__ = [
    "ApiConnectionError",
    "ApiError",
    "ApiTimeout",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "InvalidDefinition",
    "InvalidRequest",
    "NotFound",
    "PayloadTooLarge",
    "RateLimited",
    "ServerError",
    "ServiceUnavailable",
    "Unauthorized",
    "UnsupportedMediaType",
    "error_from_response",
]


class ApiError(OrchestrionError):
    """The server answered with an error (or could not be reached: ``status`` is None).

    ``problem`` is the whole RFC 9457 body; ``detail`` (else ``title``) is the message.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        title: str | None = None,
        type: str | None = None,
        instance: str | None = None,
        request_id: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        problem: dict[str, Any] | None = None,
    ) -> None:
        # Not super().__init__: subclasses also derive from engine errors whose constructors
        # take other arguments (DefinitionError takes issues); the message is all Exception needs.
        Exception.__init__(self, message)
        self.message = message
        self.status = status
        self.title = title
        self.type = type
        self.instance = instance
        self.request_id = request_id
        self.errors = list(errors or [])
        self.problem = dict(problem or {})

    @property
    def detail(self) -> str:
        return self.message

    def __str__(self) -> str:
        return self.message


class ApiConnectionError(ApiError):
    """The server could not be reached, or the connection broke mid-answer."""


class ApiTimeout(ApiConnectionError):
    """The server did not answer within the client's timeout."""


class BadRequest(ApiError):
    """400: the request is malformed (e.g. a header the server requires is missing)."""


class Unauthorized(ApiError):
    """401: no API key, or one the server does not know."""


class Forbidden(ApiError):
    """403: the API key's role does not allow this call."""


class NotFound(ApiError, ExecutionNotFound):
    """404: no such execution, definition or route."""


class Conflict(ApiError, InvalidTransition):
    """409: the execution's state does not allow it, or a definition version clashes."""


class PayloadTooLarge(ApiError):
    """413: the body is over the server's size limit."""


class UnsupportedMediaType(ApiError):
    """415: the body's content type is not JSON or YAML."""


class InvalidRequest(ApiError):
    """422: the definition or the input is invalid; ``errors`` lists every problem."""


class InvalidDefinition(InvalidRequest, DefinitionError):
    """422 for a workflow definition; ``issues`` holds one ``DefinitionIssue`` per problem."""

    def __init__(self, message: str, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.issues = [_issue(item) for item in self.errors] or [DefinitionIssue(message)]
        self.source = None


class RateLimited(ApiError):
    """429: too many requests; try again after ``retry_after`` seconds (None if not said)."""

    retry_after: float | None = None


class ServerError(ApiError):
    """5xx: the server failed."""


class ServiceUnavailable(ServerError):
    """503: the server is degraded or shutting down."""


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: InvalidRequest,
    429: RateLimited,
    503: ServiceUnavailable,
}
_TEXT_LIMIT = 300


def _issue(item: dict[str, Any]) -> DefinitionIssue:
    line = item.get("line")
    return DefinitionIssue(
        message=str(item.get("message", "")),
        node=item.get("node"),
        field=item.get("field"),
        line=line if isinstance(line, int) else None,
        code=str(item.get("code") or "invalid"),
    )


def _is_definition_problem(problem: dict[str, Any], errors: list[dict[str, Any]]) -> bool:
    """The problem ``type`` says so (``...:invalid-definition``); without a type, issues
    located at a node or line do."""
    kind = problem.get("type")
    if isinstance(kind, str) and kind:
        return "definition" in kind.lower()
    return any("node" in item or "line" in item for item in errors)


def error_from_response(response: httpx.Response) -> ApiError:
    """The ``ApiError`` for an error response (problem+json, other JSON, or plain text)."""
    status = response.status_code
    try:
        body: Any = response.json()
    except (ValueError, UnicodeDecodeError):
        body = None
    problem: dict[str, Any] = body if isinstance(body, dict) else {}
    raw_errors = problem.get("errors")
    errors = [e for e in raw_errors if isinstance(e, dict)] if isinstance(raw_errors, list) else []
    message = problem.get("detail") or problem.get("title")
    if not isinstance(message, str) or not message:
        if isinstance(problem.get("detail"), list):  # a framework's default 422 body
            errors = [e for e in problem["detail"] if isinstance(e, dict)]
            message = "; ".join(str(e.get("msg", e)) for e in errors) or None
        if not message:
            text = response.text.strip() if body is None else json.dumps(body)
            message = text[:_TEXT_LIMIT] or f"HTTP {status} {response.reason_phrase}".strip()
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else ApiError)
    if cls is InvalidRequest and _is_definition_problem(problem, errors):
        cls = InvalidDefinition
    error = cls(
        message,
        status=status,
        title=problem.get("title"),
        type=problem.get("type"),
        instance=problem.get("instance"),
        request_id=problem.get("request_id") or response.headers.get("x-request-id"),
        errors=errors,
        problem=problem,
    )
    if isinstance(error, RateLimited):
        error.retry_after = retry_after_seconds(response.headers.get("retry-after"))
    return error
