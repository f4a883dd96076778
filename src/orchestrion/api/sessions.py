"""Browser sessions: an API key exchanged for an HttpOnly cookie, and its CSRF token.

``POST /v1/session`` with ``Authorization: Bearer <key>`` answers with a ``Set-Cookie`` of
``orchestrion_session`` (HttpOnly, SameSite=Strict, Secure over https) and the session's CSRF
token. From then on the cookie authenticates the browser as that key, on every API path, with
two rules:

- a state-changing request (POST, PUT, PATCH, DELETE) authenticated by the cookie must carry
  the session's token in ``X-CSRF-Token``, so a page of another site that makes the browser
  send the cookie cannot change anything (it can neither read the token nor set the header);
- a bearer token, when sent, wins: the cookie is only read when no ``Authorization`` is.

The cookie never holds the key. It is ``v1.<key id>.<expiry>.<nonce>.<mac>``: the MAC is an
HMAC-SHA256 under a secret derived from the key itself, so a session is valid in every API
process serving the same keys, survives a restart, and ends when its key is removed from
``ORCHESTRION_API_KEYS``. The CSRF token is a second HMAC of the nonce under that secret (a
synchronizer token that needs no server-side state). Signing out clears the cookie and records
the session's end in the store, which every API process on the database follows
(``api/signouts.py``), so the cookie is refused everywhere, after restarts too; the session
otherwise lasts ``ORCHESTRION_SESSION_SECONDS``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "SessionBook",
    "SessionKey",
    "Ticket",
    "csrf_token",
    "issue",
    "parse",
]

COOKIE = "orchestrion_session"
CSRF_HEADER = "x-csrf-token"
_VERSION = "v1"
_MAX_COOKIE = 256  # a real ticket is about 110 characters: anything longer is not one


@dataclass(frozen=True, slots=True)
class SessionKey:
    """The session secret of one configured API key, and the id a ticket names it by."""

    kid: str  # 16 hex digits of SHA-256(key): names the key, reveals nothing usable
    secret: bytes

    @classmethod
    def of(cls, key: str) -> SessionKey:
        digest = hashlib.sha256(key.encode()).hexdigest()
        secret = hmac.new(key.encode(), b"orchestrion session v1", hashlib.sha256).digest()
        return cls(digest[:16], secret)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A parsed, not yet verified, session cookie."""

    kid: str
    expires: int
    nonce: str
    mac: str

    @property
    def signed(self) -> str:
        return f"{_VERSION}.{self.kid}.{self.expires}.{self.nonce}"

    def valid_for(self, key: SessionKey, now: float) -> bool:
        expected = _mac(key.secret, self.signed)
        return hmac.compare_digest(expected, self.mac) and now < self.expires


def _mac(secret: bytes, text: str) -> str:
    return hmac.new(secret, text.encode(), hashlib.sha256).hexdigest()


def issue(key: SessionKey, seconds: float, now: float | None = None) -> tuple[str, Ticket]:
    """A new session for ``key``: (cookie value, its ticket)."""
    expires = int((time.time() if now is None else now) + seconds)
    nonce = secrets.token_hex(16)
    signed = f"{_VERSION}.{key.kid}.{expires}.{nonce}"
    ticket = Ticket(key.kid, expires, nonce, _mac(key.secret, signed))
    return f"{signed}.{ticket.mac}", ticket


def parse(value: str) -> Ticket | None:
    """The ticket a cookie value spells, or None when it is not one (unverified)."""
    if len(value) > _MAX_COOKIE:
        return None
    parts = value.split(".")
    if len(parts) != 5 or parts[0] != _VERSION:
        return None
    _, kid, expires, nonce, mac = parts
    if not (
        len(kid) == 16
        and _hex(kid)
        and expires.isdigit()
        and len(expires) <= 12
        and len(nonce) == 32
        and _hex(nonce)
        and len(mac) == 64
        and _hex(mac)
    ):
        return None
    return Ticket(kid, int(expires), nonce, mac)


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def csrf_token(key: SessionKey, ticket: Ticket) -> str:
    """The CSRF token of a session: derived, so no process needs to remember it."""
    return _mac(key.secret, f"csrf.{ticket.nonce}")


class SessionBook:
    """Sessions signed out, remembered until they would have expired: those signed out here,
    and those the store says other processes (or this one before a restart) signed out.
    ``cursor`` is the newest store row read (``api/signouts.py`` follows the store).

    A flood of sign-outs (a key's holder signing in and out in a loop) cannot grow it without
    bound: past ``_LIMIT`` sessions signed out and still unexpired, it forgets the half that
    expires first and ends every session expiring by then (``_floor``), signed out or not.
    Forgetting them alone would make their cookies valid again."""

    _LIMIT = 100_000

    def __init__(self) -> None:
        self._ended: dict[str, float] = {}
        self._floor = 0.0  # every session expiring at or before this is ended
        self.cursor = 0

    def end(self, ticket: Ticket, now: float | None = None) -> None:
        self.end_nonce(ticket.nonce, ticket.expires, now)

    def end_nonce(self, nonce: str, expires: float, now: float | None = None) -> None:
        moment = time.time() if now is None else now
        if len(self._ended) >= self._LIMIT:
            self._ended = {n: e for n, e in self._ended.items() if e > moment}
            if len(self._ended) >= self._LIMIT:  # all still live: see the class doc
                ordered = sorted(self._ended.items(), key=lambda item: item[1])
                half = self._LIMIT // 2
                self._floor = max(self._floor, ordered[half - 1][1])
                self._ended = dict(ordered[half:])
        if expires > self._floor:
            self._ended[nonce] = expires

    def ended(self, ticket: Ticket) -> bool:
        return ticket.nonce in self._ended or ticket.expires <= self._floor
