"""The audit of API actions: every mutating call and every admin read of a known caller
leaves a record; requests refused before authentication are only counted.

An ASGI middleware inside the request middleware (so the request id is known) and outside
the gate (api/gate.py, which identifies the caller). For an audited request of an
authenticated caller it holds the response back until it is complete, writes the record,
then sends it: a client that got an answer can find the record. Who: the matched API key's
id (``key:`` and the first 8 hex digits of its SHA-256, never the key), its role, the
``X-Client-ID`` and ``X-Request-Source`` it claims (printable ASCII, 128 characters at most)
and the client address. What: method, route template, the ids in the path and, for
creations, the ids in the answer; the outcome is the status code. The action is
``api.<route name>`` whatever refused the call: the body's size (``RequestMiddleware``
answers before any route, and calls ``record_refusal``), its media type or its JSON
(refused before routing): the route is found from the path. A method the route does not
allow is ``api.unmatched``, with the methods it allows.

Who gets a record of their own:

- a caller with a valid API key, whatever the outcome (a 403 is worth knowing), except a
  429: a flood of refused calls must not fill the trail;
- when the API is open (no keys), an ``anonymous`` caller whose call did something (a 2xx
  or 3xx) or failed on the server's side (5xx).

Everything else refused (a missing or unknown key: 401, and the 429 of callers without a
key, or an open API's 4xx) goes to ``refusals.RefusalSummary``: one summary record per
window, never one per request, and nothing in it chosen by the client.

A record that cannot be written (the store is down) is logged as an error and the response
goes out anyway: the action already happened, and a 500 would say it had not.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion.api.auth import MUTATING_METHODS, Caller, api_key_id, caller_of
from orchestrion.api.surfaces import ADMIN_PREFIXES, is_api_path

if TYPE_CHECKING:
    from orchestrion.api.context import ApiContext

__all__ = ["AuditMiddleware", "api_key_id", "is_audited", "record_refusal", "route_of"]

logger = logging.getLogger(__name__)

_HEADER_LIMIT = 128  # header values kept in the trail, at most
_BODY_IDS = ("execution_id", "workflow_definition_id", "definition_id", "event_id")
_BODY_LIMIT = 65536  # answers larger than this are not looked into for ids


def is_audited(method: str, path: str) -> bool:
    """Mutating API calls (/v1 and the compatibility surfaces), and every read of the admin
    and audit endpoints."""
    if not is_api_path(path):
        return False
    if method in MUTATING_METHODS:
        return True
    return any(path == p or path.startswith(p + "/") for p in ADMIN_PREFIXES)


_UNPRINTABLE = re.compile(r"[^\x20-\x7e]")
_PATH_LIMIT = 512


def _header(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else _UNPRINTABLE.sub("?", value[:_HEADER_LIMIT])


def _masked(value: str | None, mask: Callable[[str], str]) -> str | None:
    return None if value is None else mask(value)


def _recorded(caller: Caller, status: int) -> bool:
    """Whether this request gets a record of its own (see the module docstring)."""
    if caller.authenticated:
        return status != 429
    return caller.open_api and not 400 <= status < 500


def _ids_in(body: bytes) -> dict[str, str]:
    if not body or len(body) > _BODY_LIMIT:
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: data[k] for k in _BODY_IDS if isinstance(data.get(k), str)}


class AuditMiddleware:
    """Audit records for API actions; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx: ApiContext = scope["app"].state.ctx
        if not ctx.engine.audit.enabled:
            await self.app(scope, receive, send)
            return
        audited = is_audited(scope["method"], scope.get("path", ""))
        caller = caller_of(scope, ctx.settings)
        if not audited or not (caller.authenticated or caller.open_api):
            # No record of its own: only a refusal is counted, and that needs the status.
            await self._count_refusals(ctx, scope, receive, send, caller, audited)
            return
        held: list[Message] = []
        status = 500
        complete = False
        at = time.time()

        async def hold(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
            held.append(message)
            if message["type"] == "http.response.body" and not message.get("more_body"):
                complete = True
                if _recorded(caller, status):
                    await self._record(ctx, scope, caller, status, held, at)
                elif status >= 400:
                    ctx.refusals.note(caller.address, status)
                for each in held:
                    await send(each)
                held.clear()

        try:
            await self.app(scope, receive, hold)
        except BaseException:
            if not complete:
                # The request middleware answers 500 for it: audit that, then let it.
                await self._record(ctx, scope, caller, 500, [], at)
            raise

    async def _count_refusals(
        self,
        ctx: ApiContext,
        scope: Scope,
        receive: Receive,
        send: Send,
        caller: Caller,
        audited: bool,
    ) -> None:
        """Pass the request through; count it in the refusal summary when it is a 401, or
        an audited call refused to a caller without a valid key."""

        async def observe(message: Message) -> None:
            if message["type"] == "http.response.start":
                status = message["status"]
                if status == 401 or (audited and status >= 400):
                    ctx.refusals.note(caller.address, status)
            await send(message)

        await self.app(scope, receive, observe)

    @staticmethod
    async def _record(
        ctx: ApiContext,
        scope: Scope,
        caller: Caller,
        status: int,
        held: list[Message],
        at: float,
    ) -> None:
        headers = Headers(scope=scope)
        name, template, path_params, allowed = route_of(scope)
        actor = caller.key_id or "anonymous"
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        found = _ids_in(body) if 200 <= status < 300 else {}
        # What the client chose (headers, the path) is masked like a log line: the trail is
        # kept for years and read by auditors.
        masker = ctx.engine.governance.masker
        client = (lambda text: text) if masker is None else masker.mask_text
        details: dict[str, Any] = {
            "method": scope["method"],
            "route": template,
            "path": client(_UNPRINTABLE.sub("?", scope.get("path", "")[:_PATH_LIMIT])),
            "role": caller.role,
            "client_id": _masked(_header(headers, "x-client-id"), client),
            "request_source": _masked(_header(headers, "x-request-source"), client),
            "remote": caller.address,
            "request_id": scope.get("state", {}).get("request_id"),
        }
        if allowed:  # the path is a route's, the method is not one of its
            details["allowed"] = allowed
        if path_params:
            details["target"] = {
                k: client(_UNPRINTABLE.sub("?", str(v)[:_HEADER_LIMIT]))
                for k, v in path_params.items()
            }
        if found:
            details["created"] = found
        execution_id = path_params.get("execution_id") or found.get("execution_id")
        try:
            await ctx.engine.audit.record(
                f"api.{name}",
                actor=actor,
                execution_id=None if execution_id is None else str(execution_id),
                node_id=path_params.get("node_id"),
                outcome=str(status),
                details=details,
                at=at,
            )
        except Exception:
            logger.exception("cannot write the audit record of %s %s", scope["method"], template)


async def record_refusal(scope: Scope, status: int) -> None:
    """Audit a request refused before it reached the routes (a body declared larger than the
    limit: ``RequestMiddleware``) as ``AuditMiddleware`` would have."""
    ctx: ApiContext | None = getattr(getattr(scope.get("app"), "state", None), "ctx", None)
    if ctx is None or not ctx.engine.audit.enabled:
        return
    caller = caller_of(scope, ctx.settings)
    audited = is_audited(scope["method"], scope.get("path", ""))
    if audited and (caller.authenticated or caller.open_api) and _recorded(caller, status):
        await AuditMiddleware._record(ctx, scope, caller, status, [], time.time())
    elif status == 401 or (audited and status >= 400):
        ctx.refusals.note(caller.address, status)


def route_of(scope: Scope) -> tuple[str, str, dict[str, Any], list[str] | None]:
    """The route a request is for: its name, path template, path parameters and, when the
    path is the route's but the method is not one of its, the methods it allows (the name is
    then ``unmatched``: the call reached no route). A request refused before routing (its
    body, its media type, its JSON) is named after the route it was for all the same."""
    route = scope.get("route")
    params: dict[str, Any] = dict(scope.get("path_params") or {})
    app = scope.get("app")
    if route is None and app is not None:
        for candidate in getattr(getattr(app, "router", None), "routes", ()):
            match, child = candidate.matches(scope)
            if match is Match.FULL or (match is Match.PARTIAL and route is None):
                route, params = candidate, dict(child.get("path_params") or {})
                if match is Match.FULL:
                    break
    if route is None:
        return "unmatched", "<unmatched>", params, None
    template = str(getattr(route, "path", None) or "<unmatched>")
    methods = getattr(route, "methods", None)
    if methods and scope["method"] not in methods:
        return "unmatched", template, params, sorted(methods)
    return str(getattr(route, "name", None) or "unmatched"), template, params, None
