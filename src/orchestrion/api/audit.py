"""The audit of API actions: every mutating call and every admin read leaves a record.

An ASGI middleware inside the request middleware (so the request id is known). For an audited
request it holds the response back until it is complete, writes the record, then sends it: a
client that got an answer can find the record. Who: the API key's id (``key:`` and the first 8
hex digits of its SHA-256, never the key; ``anonymous`` without one), its role, ``X-Client-ID``,
``X-Request-Source`` and the remote address. What: method, route template, the ids in the
path and, for creations, the ids in the answer; the outcome is the status code. Calls the
rate limiter refused (429) are not recorded, so a flood cannot fill the trail.

A record that cannot be written (the store is down) is logged as an error and the response
goes out anyway: the action already happened, and a 500 would say it had not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion.api.auth import MUTATING_METHODS

if TYPE_CHECKING:
    from orchestrion.api.context import ApiContext

__all__ = ["AuditMiddleware", "api_key_id", "is_audited"]

logger = logging.getLogger(__name__)

_ADMIN_READS = ("/v1/admin", "/v1/audit")
_HEADER_LIMIT = 128  # header values kept in the trail, at most
_BODY_IDS = ("execution_id", "workflow_definition_id", "definition_id")
_BODY_LIMIT = 65536  # answers larger than this are not looked into for ids


def api_key_id(token: str) -> str:
    """A stable, non-secret id for an API key: ``key:`` + 8 hex digits of its SHA-256."""
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:8]


def _role(token: str, keys: Mapping[str, str]) -> str | None:
    # Every key compared in constant time, as the auth dependency does.
    found: str | None = None
    for key, role in keys.items():
        if hmac.compare_digest(token.encode(), key.encode()):
            found = role
    return found


def is_audited(method: str, path: str) -> bool:
    """Mutating calls under /v1, and every read of the admin and audit endpoints."""
    if not path.startswith("/v1/"):
        return False
    if method in MUTATING_METHODS:
        return True
    return any(path == p or path.startswith(p + "/") for p in _ADMIN_READS)


def _header(headers: Headers, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else value[:_HEADER_LIMIT]


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
        if scope["type"] != "http" or not is_audited(scope["method"], scope.get("path", "")):
            await self.app(scope, receive, send)
            return
        ctx: ApiContext = scope["app"].state.ctx
        if not ctx.engine.audit.enabled:
            await self.app(scope, receive, send)
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
                if status != 429:  # refused by the rate limiter: a flood must not fill the trail
                    await self._record(ctx, scope, status, held, at)
                for each in held:
                    await send(each)
                held.clear()

        try:
            await self.app(scope, receive, hold)
        except BaseException:
            if not complete:
                # The request middleware answers 500 for it: audit that, then let it.
                await self._record(ctx, scope, 500, [], at)
            raise

    async def _record(
        self, ctx: ApiContext, scope: Scope, status: int, held: list[Message], at: float
    ) -> None:
        headers = Headers(scope=scope)
        route = scope.get("route")
        template = getattr(route, "path", None) or "<unmatched>"
        name = getattr(route, "name", None) or "unmatched"
        actor = "anonymous"
        role: str | None = None
        scheme, _, token = (headers.get("authorization") or "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            token = token.strip()
            actor = api_key_id(token)
            role = _role(token, ctx.settings.api_keys)
        path_params: dict[str, Any] = dict(scope.get("path_params") or {})
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        found = _ids_in(body) if 200 <= status < 300 else {}
        client = scope.get("client")
        details: dict[str, Any] = {
            "method": scope["method"],
            "route": template,
            "path": scope.get("path", ""),
            "role": role,
            "client_id": _header(headers, "x-client-id"),
            "request_source": _header(headers, "x-request-source"),
            "remote": client[0] if client else None,
            "request_id": scope.get("state", {}).get("request_id"),
        }
        if path_params:
            details["target"] = {k: str(v) for k, v in path_params.items()}
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
