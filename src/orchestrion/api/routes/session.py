"""Sign in and out of a browser session (api/sessions.py): the dashboard's, or any client's.

``POST /v1/session`` takes the API key from ``Authorization: Bearer`` (never from a form or a
cookie, so no other site can sign a browser in), sets the session cookie and answers with the
CSRF token. ``GET /v1/session`` says who the caller is and, for a cookie session, gives the
token again (a page reloads and asks). ``DELETE /v1/session`` signs out.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.api import signouts
from orchestrion.api.auth import (
    Caller,
    caller_of,
    identifier,
    required_headers,
    unauthenticated,
)
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.routes import Ctx
from orchestrion.api.sessions import COOKIE, csrf_token, issue
from orchestrion.settings import ApiRole

__all__ = ["SessionOut", "router"]

router = APIRouter(prefix="/v1", tags=["session"])


class SessionOut(BaseModel):
    """Who the caller is, and what a browser session needs to change anything."""

    model_config = ConfigDict(extra="forbid")

    open: bool = Field(description="no API keys are configured: every caller may do anything")
    role: ApiRole | None = None
    key_id: str | None = Field(default=None, examples=["key:1a2b3c4d"])
    name: str | None = Field(default=None, description="the key's configured name")
    via: Literal["bearer", "session", "none"] = "none"
    expires_at: datetime | None = Field(default=None, description="when the session ends")
    csrf_token: str | None = Field(
        default=None,
        description="send it as X-CSRF-Token on every state-changing call made by the cookie",
    )
    required_headers: list[str] = Field(
        default_factory=list,
        description="headers every state-changing call must carry (ORCHESTRION_REQUIRED_HEADERS"
        " and the governance policy's required_headers)",
    )


def _out(ctx: Ctx, caller: Caller) -> SessionOut:
    headers = required_headers(ctx)
    if caller.open_api:
        return SessionOut(open=True, role="admin", required_headers=headers)
    if not caller.authenticated or caller.key_id is None:
        raise unauthenticated(caller)
    out = SessionOut(
        open=False,
        role=caller.role,
        key_id=caller.key_id,
        name=caller.name,
        required_headers=headers,
    )
    if caller.ticket is None:
        out.via = "bearer"
        return out
    key = identifier(ctx.settings).session_key(caller.key_id)
    assert key is not None  # the ticket was verified against it
    out.via = "session"
    out.expires_at = datetime.fromtimestamp(caller.ticket.expires, UTC)
    out.csrf_token = csrf_token(key, caller.ticket)
    return out


def _secure(request: Request, ctx: Ctx) -> bool:
    configured = ctx.settings.session_cookie_secure
    return request.url.scheme == "https" if configured is None else configured


@router.get(
    "/session",
    response_model=SessionOut,
    responses=error_responses(401),
    summary="Who the caller is (and the CSRF token of its session cookie)",
)
async def who(request: Request, ctx: Ctx) -> SessionOut:
    return _out(ctx, caller_of(request.scope, ctx.settings))


@router.post(
    "/session",
    response_model=SessionOut,
    status_code=201,
    responses=error_responses(400, 401),
    summary="Exchange the bearer API key for an HttpOnly session cookie",
)
async def sign_in(request: Request, response: Response, ctx: Ctx) -> SessionOut:
    caller = caller_of(request.scope, ctx.settings)
    if caller.open_api:
        return SessionOut(open=True, role="admin")
    if caller.ticket is not None:
        raise ApiProblem(
            400, "sign in with 'Authorization: Bearer <API key>', not with a session cookie"
        )
    if caller.key_id is None:
        raise unauthenticated(caller)
    key = identifier(ctx.settings).session_key(caller.key_id)
    assert key is not None
    value, ticket = issue(key, ctx.settings.session_seconds)
    response.set_cookie(
        COOKIE,
        value,
        max_age=int(ctx.settings.session_seconds),
        path="/",
        httponly=True,
        samesite="strict",
        secure=_secure(request, ctx),
    )
    return SessionOut(
        open=False,
        role=caller.role,
        key_id=caller.key_id,
        name=caller.name,
        via="session",
        expires_at=datetime.fromtimestamp(ticket.expires, UTC),
        csrf_token=csrf_token(key, ticket),
        required_headers=required_headers(ctx),
    )


@router.delete(
    "/session",
    response_model=SessionOut,
    responses=error_responses(401, 403),
    summary="Sign out: end the session and clear its cookie",
)
async def sign_out(request: Request, response: Response, ctx: Ctx) -> SessionOut:
    caller = caller_of(request.scope, ctx.settings)
    if caller.ticket is not None:
        await signouts.sign_out(
            ctx.engine.sign_outs, identifier(ctx.settings).sessions, caller.ticket
        )
    response.delete_cookie(
        COOKIE, path="/", httponly=True, samesite="strict", secure=_secure(request, ctx)
    )
    return SessionOut(open=caller.open_api)
