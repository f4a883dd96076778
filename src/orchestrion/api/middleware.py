"""The ASGI layer around every request: request id, body size limit, access log, HTTP metrics,
the headers of every answer (``Cache-Control: no-store``, ``X-Content-Type-Options:
nosniff``), and the catch-all that turns an unexpected exception into a bare 500.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: it does not buffer
streaming responses (event streams), and it sits inside Starlette's outermost error layer, so
it can answer an unhandled exception itself (with the request id) instead of letting it
propagate with a traceback.
"""

from __future__ import annotations

import logging
import os
import re
import time
from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion.api.audit import record_refusal
from orchestrion.api.context import request_id_var
from orchestrion.api.problems import ApiProblem, internal_error, problem_response
from orchestrion.api.raw_headers import add_answer_headers, header
from orchestrion.logcontext import reaches_a_handler

if TYPE_CHECKING:
    from orchestrion.observability.metrics import Metrics

__all__ = ["REQUEST_ID_HEADER", "RequestMiddleware"]

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("orchestrion.api.access")

REQUEST_ID_HEADER = "X-Request-ID"
# A client's request id is reused only when it is short and plain, and does not look like
# personal data (the policy's masker leaves it alone): it lands in every log line and in the
# signed audit trail. Otherwise the request gets an id of its own.
_CLIENT_ID = re.compile(r"^[A-Za-z0-9._:/=-]{1,128}$")
_UNMATCHED = "<unmatched>"  # one label for every unknown path: bounded metric cardinality
_REQUEST_ID_KEY = REQUEST_ID_HEADER.lower().encode("latin-1")
_NO_SNIFF = ((b"x-content-type-options", b"nosniff"),)
_NO_SNIFF_NO_STORE = (*_NO_SNIFF, (b"cache-control", b"no-store"))


# A UUID4's bits: its version (4) and variant (RFC 4122) set in 128 random ones.
_UUID4_KEEP = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_request_id() -> str:
    """A request id: a random UUID4 in hex, as ``uuid.uuid4().hex`` writes it, for a third
    of its cost (no UUID object made and taken apart again on every request)."""
    return "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_KEEP | _UUID4_SET)


def _plain_id(scope: Scope, given: str) -> bool:
    if not _CLIENT_ID.match(given):
        return False
    app = scope.get("app")
    ctx = getattr(getattr(app, "state", None), "ctx", None)
    masker = None if ctx is None else ctx.engine.governance.masker
    return masker is None or masker.mask_text(given) == given


class _BodyTooLarge(ApiProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body is larger than the limit of {limit} bytes")


class RequestMiddleware:
    """Request id in, ``X-Request-ID`` out; 413 over ``max_body_bytes``; one access log line
    and the HTTP metrics per request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, metrics: Metrics) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = header(scope, _REQUEST_ID_KEY)
        request_id = given if given and _plain_id(scope, given) else new_request_id()
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                # Answers hold data and CSRF tokens: no cache keeps them, no browser sniffs
                # them into another type. Static files set their own caching.
                add_answer_headers(
                    message,
                    replace=((_REQUEST_ID_KEY, request_id.encode("latin-1")),),
                    default=_NO_SNIFF if "/static/" in path else _NO_SNIFF_NO_STORE,
                )
            await send(message)

        path = scope.get("path", "")
        try:
            if self._declared_too_large(header(scope, b"content-length")):
                response = problem_response(
                    413,
                    f"the request body is larger than the limit of {self.max_body_bytes} bytes",
                    instance=path,
                )
                await record_refusal(scope, 413)  # no route saw it: audited from here
                await response(scope, receive, send_with_id)
            else:
                await self.app(scope, self._limited(receive), send_with_id)
        except Exception:
            logger.exception(
                "unhandled error serving %s %s",
                scope.get("method"),
                path,
                extra={"request_id": request_id},
            )
            if response_started:
                raise  # too late for a clean answer: let the server drop the connection
            await internal_error(path)(scope, receive, send_with_id)
        finally:
            self._account(scope, status, time.perf_counter() - started, request_id)
            request_id_var.reset(token)

    def _declared_too_large(self, length: str | None) -> bool:
        if length is None:
            return False
        try:
            return int(length) > self.max_body_bytes
        except ValueError:
            return False

    def _limited(self, receive: Receive) -> Receive:
        """``receive`` that raises a 413 once the body (chunked, say) exceeds the limit."""
        limit = self.max_body_bytes
        total = 0

        async def limited() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > limit:
                    raise _BodyTooLarge(limit)
            return message

        return limited

    def _account(self, scope: Scope, status: int, seconds: float, request_id: str) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or _UNMATCHED
        method = scope.get("method", "")
        self.metrics.observe_http(method, template, status, seconds)
        if not reaches_a_handler(access_logger, logging.INFO):
            return
        client = scope.get("client")
        access_logger.info(
            "%s %s %d %.1fms",
            method,
            scope.get("path", ""),
            status,
            seconds * 1000,
            extra={
                "request_id": request_id,
                "method": method,
                "route": template,
                "path": scope.get("path", ""),
                "status": status,
                "duration_ms": round(seconds * 1000, 3),
                "client": client[0] if client else None,
            },
        )
