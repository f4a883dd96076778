"""API keys with roles, and the headers mutating calls must carry, as FastAPI dependencies.

With ``ORCHESTRION_API_KEYS`` set, every /v1 call needs ``Authorization: Bearer <key>``:
viewer reads, operator also changes executions, admin may do everything. With no keys the
API is open, and ``warn_if_open`` says so loudly at start. Mutating calls must carry the
headers of ``ORCHESTRION_REQUIRED_HEADERS`` and of the governance policy.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from orchestrion.api.context import ApiContext, get_ctx
from orchestrion.api.problems import ApiProblem
from orchestrion.settings import ApiRole, Settings

__all__ = [
    "MUTATING_METHODS",
    "caller_role",
    "require_headers",
    "require_role",
    "required_headers",
    "warn_if_open",
]

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}

_bearer = HTTPBearer(
    auto_error=False,
    description="An API key from ORCHESTRION_API_KEYS (not needed when none is configured)",
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
Ctx = Annotated[ApiContext, Depends(get_ctx)]


def warn_if_open(settings: Settings) -> None:
    """Log a loud warning when no API key is configured."""
    if not settings.api_keys:
        logger.warning(
            "NO API KEYS CONFIGURED: the API is open to anyone who can reach it; "
            "set ORCHESTRION_API_KEYS (e.g. 'key1:admin,key2:viewer') to require keys"
        )


def _role_of(token: str, keys: dict[str, ApiRole]) -> ApiRole | None:
    # Compare with every key in constant time, so timing tells nothing about near misses.
    found: ApiRole | None = None
    given = token.encode()
    for key, role in keys.items():
        if hmac.compare_digest(given, key.encode()):
            found = role
    return found


def require_role(minimum: ApiRole) -> Callable[..., Awaitable[ApiRole | None]]:
    """A dependency that lets a request through when its key's role is ``minimum`` or above.

    Returns the role (None when the API is open).
    """

    async def dependency(ctx: Ctx, credentials: Credentials) -> ApiRole | None:
        keys = ctx.settings.api_keys
        if not keys:
            return None
        challenge = {"WWW-Authenticate": 'Bearer realm="orchestrion"'}
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiProblem(
                401, "this API needs 'Authorization: Bearer <API key>'", headers=challenge
            )
        role = _role_of(credentials.credentials, keys)
        if role is None:
            raise ApiProblem(401, "unknown API key", headers=challenge)
        if _RANK[role] < _RANK[minimum]:
            raise ApiProblem(403, f"this needs the {minimum} role; the API key is {role}")
        return role

    dependency.__name__ = f"require_{minimum}"
    return dependency


async def caller_role(ctx: Ctx, credentials: Credentials) -> ApiRole | None:
    """Dependency: the role of the request's API key; None when the API is open or the key is
    missing or unknown (``require_role`` answers those requests with 401 first)."""
    if not ctx.settings.api_keys or credentials is None:
        return None
    return _role_of(credentials.credentials, ctx.settings.api_keys)


def required_headers(ctx: ApiContext) -> list[str]:
    """``ORCHESTRION_REQUIRED_HEADERS`` and the policy's ``required_headers``, each once."""
    names: dict[str, str] = {}
    for name in (*ctx.settings.required_headers, *ctx.engine.governance.policy.required_headers):
        names.setdefault(name.lower(), name)  # header names are case-insensitive
    return list(names.values())


async def require_headers(request: Request, ctx: Ctx) -> None:
    """Dependency: mutating calls must carry ``ORCHESTRION_REQUIRED_HEADERS`` and the
    governance policy's ``required_headers``."""
    if request.method not in MUTATING_METHODS:
        return
    missing = [name for name in required_headers(ctx) if not request.headers.get(name)]
    if missing:
        raise ApiProblem(
            400,
            f"missing required header{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            slug="missing-header",
            errors=[
                {"code": "missing_header", "message": f"header {name} is required", "field": name}
                for name in missing
            ],
        )
