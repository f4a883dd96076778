"""Named leases this engine's process holds in its database, for work that one process of
those sharing the database does at a time (the service's retention sweep,
``governance/retention.py``).

A lease is a row of the store's ``leases`` table (``claim_lease``): taken when free or run
out, renewed by its holder, given up on a graceful stop. The scheduler and the event
publisher hold theirs the same way; this is the door for the layers above the engine, which
never reach its store themselves.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrion.store.base import Store

__all__ = ["Leases"]


class Leases:
    """Claim and release leases as ``owner``; ``store`` gives the engine's store as it is now."""

    def __init__(self, store: Callable[[], Store], owner: str) -> None:
        self._store = store
        self._owner = owner

    async def claim(self, name: str, until: float, now: float) -> bool:
        """Take or renew lease ``name`` until ``until``: True when this process holds it."""
        return await self._store().claim_lease(name, self._owner, until, now)

    async def release(self, name: str) -> None:
        """Give lease ``name`` up if this process holds it: another may take it at once."""
        await self._store().release_lease(name, self._owner)
