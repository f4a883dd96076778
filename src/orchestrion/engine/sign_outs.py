"""Signed-out API sessions, kept in the engine's store for every API process on it.

The service signs a session out through ``SignOuts.end`` and follows the sign-outs made by
other processes (or before a restart) through ``SignOuts.since``; the store keeps them
(``store/sessions.py``).
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrion.store.base import Store
from orchestrion.store.sessions import EndedSession

__all__ = ["SignOuts"]


class SignOuts:
    """Record and read sign-outs; ``store`` gives the engine's store as it is now."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store

    async def end(self, nonce: str, expires: float, now: float) -> None:
        """Remember that session ``nonce`` (valid until ``expires``) was signed out."""
        await self._store().end_session(nonce, expires, now)

    async def since(self, after: int, now: float, limit: int) -> list[EndedSession]:
        """Sign-outs numbered above ``after`` and not expired at ``now``, oldest first."""
        return await self._store().ended_sessions(after, now, limit)
