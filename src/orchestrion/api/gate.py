"""The gate every request passes before routing: who is calling, its rate limit, its key.

An ASGI middleware, so it answers before a body is read or parsed and before any route runs:

1. identify the caller once (``auth.identify``): the configured API key its bearer token
   matches, and its client address (the peer's, or from ``X-Forwarded-For`` behind
   ``ORCHESTRION_TRUSTED_PROXIES`` only). The verdict is kept in ``scope["state"]["caller"]``
   for the role dependencies and the audit trail;
2. count the request against the caller's bucket (``ratelimit.RateLimiter``): a valid key's
   own bucket, else the address's, tighter one (the pages of the dashboard and the docs: a
   bucket of their own, ``ratelimit.RateLimiter.limit_for``). A refusal is a 429 with
   ``Retry-After``; every limited response carries ``RateLimit-Limit``, ``-Remaining`` and
   ``-Reset``;
3. with API keys configured, refuse a /v1 call (or one of a compatibility surface,
   api/surfaces.py) without a valid key (401), or signed in by a session cookie but
   changing something without the session's CSRF token (403, api/sessions.py) here, so that an
   unauthenticated request never reaches body parsing (a 413, 415 or 422 would tell it
   about the API, and cost a parse).

``/health`` and ``/metrics`` (probes and scrapers) pass untouched. Inbound webhooks
(``/v1/hooks/``) are limited like every caller without a key but need none: their signature
is checked by their route.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from orchestrion.api.auth import caller_of, unauthenticated
from orchestrion.api.problems import problem_response
from orchestrion.api.raw_headers import add_answer_headers
from orchestrion.api.surfaces import HOOKS_PREFIX, is_api_path, is_page_path

if TYPE_CHECKING:
    from orchestrion.api.context import ApiContext

__all__ = ["ApiGate"]

_UNLIMITED = frozenset({"/health", "/metrics"})


class ApiGate:
    """Caller identification, rate limiting and the 401 of /v1 calls; see the module doc."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path in _UNLIMITED:
            await self.app(scope, receive, send)
            return
        ctx: ApiContext = scope["app"].state.ctx
        caller = caller_of(scope, ctx.settings)
        page = is_page_path(path)
        decision = await ctx.limiter.take(
            caller, ctx.redis.rate_buckets if ctx.redis is not None else None, page=page
        )
        headers = decision.headers() if decision is not None else {}
        if decision is not None and not decision.allowed:
            seconds = headers["Retry-After"]
            limit = ctx.limiter.limit_for(caller, page=page)[1]
            response = problem_response(
                429,
                f"rate limit of {limit.rate:g} requests/s (burst {limit.burst}) exceeded;"
                f" retry in {seconds} s",
                instance=path,
                headers=headers,
            )
            await response(scope, receive, send)
            return
        if (
            not caller.authenticated
            and not caller.open_api
            and is_api_path(path)
            and not path.startswith(HOOKS_PREFIX)  # signed instead (api/routes/hooks.py)
        ):
            problem = unauthenticated(caller)
            response = problem_response(
                problem.status_code,
                str(problem.detail),
                slug=problem.slug,
                instance=path,
                headers={**(problem.headers or {}), **headers},
            )
            await response(scope, receive, send)
            return
        if not headers:
            await self.app(scope, receive, send)
            return

        limits = tuple(
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in headers.items()
        )

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                add_answer_headers(message, replace=limits)
            await send(message)

        await self.app(scope, receive, send_with_limits)
