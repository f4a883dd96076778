"""API keys with roles, who a request comes from, and the headers mutating calls must carry.

With ``ORCHESTRION_API_KEYS`` set, every /v1 call needs ``Authorization: Bearer <key>``:
viewer reads, operator also changes executions, admin may do everything. With no keys the
API is open, and ``warn_if_open`` says so loudly at start. Mutating calls must carry the
headers of ``ORCHESTRION_REQUIRED_HEADERS`` and of the governance policy.

``identify`` makes a request's ``Caller`` once (the gate in api/gate.py does it before any
route runs): the configured key the bearer token matches, if any, and the client address.
Rate limits, the role dependencies and the audit trail all read that one verdict, so no
client-chosen string (a token that matches nothing, an ``X-Client-ID``) ever names a caller.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase
from starlette.datastructures import Headers
from starlette.requests import cookie_parser
from starlette.types import Scope

from orchestrion.api.client_address import TrustedProxies, client_address
from orchestrion.api.context import ApiContext, get_ctx
from orchestrion.api.problems import ApiProblem
from orchestrion.api.raw_headers import header
from orchestrion.api.sessions import (
    COOKIE,
    CSRF_HEADER,
    SessionBook,
    SessionKey,
    Ticket,
    csrf_token,
    parse,
)
from orchestrion.settings import ApiRole, Settings

__all__ = [
    "MIN_KEY_LENGTH",
    "MUTATING_METHODS",
    "Access",
    "Caller",
    "Identifier",
    "api_key_id",
    "caller_of",
    "caller_role",
    "check_headers",
    "identifier",
    "identify",
    "require_role",
    "required_headers",
    "unauthenticated",
    "warn_if_open",
]

logger = logging.getLogger(__name__)

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RANK: dict[str, int] = {"viewer": 0, "operator": 1, "admin": 2}

_BEARER_DESCRIPTION = "An API key from ORCHESTRION_API_KEYS (not needed when none is configured)"
Ctx = Annotated[ApiContext, Depends(get_ctx)]


MIN_KEY_LENGTH = 16
"""Keys shorter than this are guessable: the service warns about each at start."""


def warn_if_open(settings: Settings) -> None:
    """Log a loud warning when no API key is configured, and one for each short key."""
    if not settings.api_keys:
        logger.warning(
            "NO API KEYS CONFIGURED: the API is open to anyone who can reach it; "
            "set ORCHESTRION_API_KEYS (e.g. 'key1:admin,key2:viewer') to require keys"
        )
    for key, role in settings.api_keys.items():
        if len(key) < MIN_KEY_LENGTH:
            logger.warning(
                "API key %s (%s) has %d characters: keys shorter than %d can be guessed; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(32))'",
                api_key_id(key),
                role,
                len(key),
                MIN_KEY_LENGTH,
            )


def api_key_id(token: str) -> str:
    """A stable, non-secret id for an API key: ``key:`` + 8 hex digits of its SHA-256."""
    return "key:" + hashlib.sha256(token.encode()).hexdigest()[:8]


@dataclass(frozen=True, slots=True)
class _Key:
    digest: bytes
    role: ApiRole
    key_id: str  # the audit trail's actor
    bucket: str  # the rate limiter's identity: a longer digest prefix, never the key
    name: str | None = None  # its name in ORCHESTRION_API_KEYS (``key:role:name``)
    session: SessionKey | None = None  # what signs its browser sessions (api/sessions.py)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a request: the configured key its token matched (if any) and its address.

    ``key_id`` and ``bucket`` are derived from the configured key, never from what the client
    sent; without a match they are None and the caller is known only by its address.
    """

    address: str
    key_id: str | None = None
    role: ApiRole | None = None
    bucket: str | None = None
    open_api: bool = False  # no keys are configured: every caller is anonymous
    name: str | None = None  # the matched key's configured name
    presented: bool = False  # an Authorization header was sent (matching or not)
    ticket: Ticket | None = None  # authenticated by this session cookie, not a bearer token
    csrf_refused: bool = False  # a session cookie on a mutating call without its CSRF token
    session_refused: bool = False  # a session cookie that is not (or no longer) valid

    @property
    def authenticated(self) -> bool:
        return self.key_id is not None


class Identifier:
    """Matches bearer tokens against the configured keys and finds the client address.

    Keys are held as SHA-256 digests; a token is hashed once and compared with every digest
    in constant time, so timing tells nothing about near misses.
    """

    def __init__(
        self,
        keys: Mapping[str, ApiRole],
        proxies: TrustedProxies,
        names: Mapping[str, str] | None = None,
    ) -> None:
        self._keys: list[_Key] = []
        for key, role in keys.items():
            digest = hashlib.sha256(key.encode()).digest()
            bucket = "key:" + digest.hex()[:32]
            name = (names or {}).get(key)
            session = SessionKey.of(key)
            self._keys.append(_Key(digest, role, api_key_id(key), bucket, name, session))
        self.proxies = proxies
        self.sessions = SessionBook()

    @property
    def open_api(self) -> bool:
        return not self._keys

    def match(self, token: str) -> _Key | None:
        given = hashlib.sha256(token.encode()).digest()
        found: _Key | None = None
        for key in self._keys:
            if hmac.compare_digest(given, key.digest):
                found = key
        return found

    def session_key(self, key_id: str) -> SessionKey | None:
        """The session secret of the configured key ``key_id`` names."""
        for key in self._keys:
            if key.key_id == key_id:
                return key.session
        return None

    def _by_kid(self, kid: str) -> _Key | None:
        found: _Key | None = None
        for key in self._keys:
            if key.session is not None and hmac.compare_digest(key.session.kid, kid):
                found = key
        return found

    def identify(self, scope: Scope) -> Caller:
        address = client_address(scope, self.proxies)
        if self.open_api:
            return Caller(address, open_api=True)
        given = header(scope, b"authorization")
        if given is None:
            cookie = header(scope, b"cookie")
            if cookie is None:
                return Caller(address)
            return self._by_session(scope, Headers(scope=scope), cookie, address)
        scheme, _, token = given.partition(" ")
        key = self.match(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
        if key is None:
            return Caller(address, presented=True)
        return Caller(address, key.key_id, key.role, key.bucket, presented=True, name=key.name)

    def _by_session(self, scope: Scope, headers: Headers, cookie: str, address: str) -> Caller:
        value = cookie_parser(cookie).get(COOKIE)
        if value is None:
            return Caller(address)
        ticket = parse(value)
        key = self._by_kid(ticket.kid) if ticket is not None else None
        if (
            ticket is None
            or key is None
            or key.session is None
            or not ticket.valid_for(key.session, time.time())
            or self.sessions.ended(ticket)
        ):
            return Caller(address, presented=True, session_refused=True)
        if scope.get("method") in MUTATING_METHODS:
            given = headers.get(CSRF_HEADER, "")
            if not hmac.compare_digest(given.encode(), csrf_token(key.session, ticket).encode()):
                return Caller(address, presented=True, csrf_refused=True)
        return Caller(
            address,
            key.key_id,
            key.role,
            key.bucket,
            presented=True,
            name=key.name,
            ticket=ticket,
        )


_identifiers: dict[int, tuple[Settings, Identifier]] = {}


def _identifier(settings: Settings) -> Identifier:
    # One per settings object (the app's, or a test's): keys are hashed once, not per call.
    cached = _identifiers.get(id(settings))
    if cached is not None and cached[0] is settings:
        return cached[1]
    identifier = Identifier(
        settings.api_keys, TrustedProxies(settings.trusted_proxies), settings.api_key_names
    )
    if len(_identifiers) >= 16:
        _identifiers.clear()
    _identifiers[id(settings)] = (settings, identifier)
    return identifier


def identifier(settings: Settings) -> Identifier:
    """The key matcher of ``settings`` (one per settings object)."""
    return _identifier(settings)


def identify(scope: Scope, settings: Settings) -> Caller:
    """The caller of the request in ``scope``, as ``settings`` (keys, proxies) define it."""
    return _identifier(settings).identify(scope)


def caller_of(scope: Scope, settings: Settings) -> Caller:
    """The caller the gate established for this request (identified here if it did not)."""
    state = scope.setdefault("state", {})
    caller = state.get("caller")
    if not isinstance(caller, Caller):
        caller = state["caller"] = identify(scope, settings)
    return caller


class Access(SecurityBase):
    """The one dependency of a route: its role check, and the checks every request of the
    route must pass before its parameters and body are read.

    ``minimum``: the role a key must have (or above); with ``headers``, a mutating call must
    also carry the required headers (``check_headers``); ``then`` are further checks of the
    request, run in order after those (a JSON body only, say). Returns the role (None when the
    API is open).

    One flat dependency instead of a tree (the context, the bearer scheme, the role, the
    headers): FastAPI solves every node of a route's dependency tree on every request, tens
    of microseconds each. It reads the caller the gate (api/gate.py) identified, and, being a
    security scheme itself, documents the bearer scheme in the OpenAPI document as
    ``HTTPBearer`` did.
    """

    def __init__(
        self,
        minimum: ApiRole,
        *,
        headers: bool = False,
        then: tuple[Callable[[Request], None], ...] = (),
    ) -> None:
        self.model = HTTPBearerModel(description=_BEARER_DESCRIPTION)
        self.scheme_name = "HTTPBearer"
        self.minimum: ApiRole = minimum
        self.headers = headers
        self.then = then
        # Named as a function dependency would be: what looks for a route's role goes by it.
        self.__name__ = f"require_{minimum}"

    async def __call__(self, request: Request) -> ApiRole | None:
        ctx: ApiContext = request.app.state.ctx
        caller = caller_of(request.scope, ctx.settings)
        role = caller.role
        if not caller.open_api:
            if role is None:
                raise unauthenticated(caller)
            if _RANK[role] < _RANK[self.minimum]:
                raise ApiProblem(403, f"this needs the {self.minimum} role; the API key is {role}")
        if self.headers:
            check_headers(request, ctx)
        for check in self.then:
            check(request)
        return role


def require_role(minimum: ApiRole, *, headers: bool = False) -> Access:
    """A dependency that lets a request through when its key's role is ``minimum`` or above
    (and, with ``headers``, a mutating call carries the required headers); see ``Access``."""
    return Access(minimum, headers=headers)


def unauthenticated(caller: Caller) -> ApiProblem:
    """The 401 for a caller without a valid key (none sent, or one that matches nothing)."""
    challenge = {"WWW-Authenticate": 'Bearer realm="orchestrion"'}
    if caller.csrf_refused:
        return ApiProblem(
            403,
            "a request signed in by the session cookie that changes something must carry the"
            " session's token in X-CSRF-Token (GET /v1/session gives it)",
            slug="csrf",
        )
    if caller.session_refused:
        return ApiProblem(
            401,
            "the session cookie is not valid (expired, signed out, or its key was removed):"
            " sign in again with POST /v1/session",
            headers=challenge,
        )
    if caller.presented:
        return ApiProblem(401, "unknown API key", headers=challenge)
    return ApiProblem(401, "this API needs 'Authorization: Bearer <API key>'", headers=challenge)


async def caller_role(request: Request, ctx: Ctx) -> ApiRole | None:
    """Dependency: the role of the request's API key; None when the API is open or the key is
    missing or unknown (``require_role`` answers those requests with 401 first)."""
    return caller_of(request.scope, ctx.settings).role


def required_headers(ctx: ApiContext) -> list[str]:
    """``ORCHESTRION_REQUIRED_HEADERS`` and the policy's ``required_headers``, each once."""
    configured, policy = ctx.settings.required_headers, ctx.engine.governance.policy
    if not configured and not policy.required_headers:  # the usual case: none
        return []
    names: dict[str, str] = {}
    for name in (*configured, *policy.required_headers):
        names.setdefault(name.lower(), name)  # header names are case-insensitive
    return list(names.values())


def check_headers(request: Request, ctx: ApiContext) -> None:
    """Mutating calls must carry ``ORCHESTRION_REQUIRED_HEADERS`` and the governance
    policy's ``required_headers``: 400 naming the ones missing."""
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
