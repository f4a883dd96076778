"""The API's routers, one module per resource, and the dependencies they share.

``VIEW`` routes need the viewer role, ``OPERATE`` routes the operator role and the required
headers (``OPERATE_JSON`` also a JSON body, when there is one), ``ADMIN`` routes
(``/v1/admin/*``) the admin role and, when they change something, the required headers. Each
is one flat dependency (``auth.Access``): FastAPI solves every node of a route's dependency
tree on every request. Rate limits and the 401 of a /v1 call without a valid key come before
routing, from the gate (api/gate.py); health and metrics are not limited.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.params import Depends as DependsParam
from pydantic import AfterValidator

from orchestrion.api.auth import Access
from orchestrion.api.context import ApiContext, get_ctx
from orchestrion.api.media import json_body_only
from orchestrion.core.idempotency import caller_key_problem

__all__ = [
    "ADMIN",
    "OPERATE",
    "OPERATE_JSON",
    "VIEW",
    "Ctx",
    "IdempotencyKey",
    "caller_key",
    "context",
]


def caller_key(key: str | None) -> str | None:
    """``key`` if a caller may use it: not one the engine derives for its own starts (an
    event's, a schedule tick's, a child's), which a caller could otherwise take first."""
    if key is not None and (problem := caller_key_problem(key)) is not None:
        raise ValueError(problem)
    return key


Ctx = Annotated[ApiContext, Depends(get_ctx)]


def context(request: Request) -> ApiContext:
    """The application's context, read from the request: what ``Ctx`` gives, without a
    dependency (for the hot routes, see api/routes/workflows.py)."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=255,
        description="Repeat the request safely: the same key gives the same execution"
        " (not beginning with event:, schedule: or child:, the engine's own)",
    ),
    AfterValidator(caller_key),
]

VIEW: list[DependsParam] = [Depends(Access("viewer"))]
OPERATE: list[DependsParam] = [Depends(Access("operator", headers=True))]
OPERATE_JSON: list[DependsParam] = [
    Depends(Access("operator", headers=True, then=(json_body_only,)))
]
ADMIN: list[DependsParam] = [Depends(Access("admin", headers=True))]  # headers: not for GET
