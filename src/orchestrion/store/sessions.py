"""Signed-out sessions, as the store keeps them.

A dashboard session is a signed cookie that no process stores, so a sign-out is the one
thing to remember about it: until the cookie would have expired, every API process on the
database must refuse it, after a restart too. ``end_session`` records the sign-out (and
forgets those past their expiry); ``ended_sessions`` reads the rows after a given sequence
number, for each process to follow them.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

__all__ = ["EndedSession", "ForwardSessions", "SessionStore"]


class EndedSession(NamedTuple):
    """One sign-out: its row's sequence number, the session's nonce and its expiry."""

    seq: int
    nonce: str
    expires: float


class SessionStore(Protocol):
    """The sign-out side of a ``Store``."""

    async def end_session(self, nonce: str, expires: float, now: float) -> None:
        """Remember that the session ``nonce`` (valid until ``expires``) was signed out; a
        second sign-out of it changes nothing. Rows expired at ``now`` are forgotten, except
        the newest (its sequence number is where readers stand)."""

    async def ended_sessions(
        self, after: int, now: float, limit: int = 10_000
    ) -> list[EndedSession]:
        """Sign-outs with a sequence number above ``after`` that have not expired at
        ``now``, oldest first, at most ``limit``."""


class ForwardSessions:
    """``SessionStore`` handed over to ``forward_sessions()`` (for stores that wrap another)."""

    def forward_sessions(self) -> SessionStore:
        raise NotImplementedError

    async def end_session(self, nonce: str, expires: float, now: float) -> None:
        await self.forward_sessions().end_session(nonce, expires, now)

    async def ended_sessions(
        self, after: int, now: float, limit: int = 10_000
    ) -> list[EndedSession]:
        return await self.forward_sessions().ended_sessions(after, now, limit)
