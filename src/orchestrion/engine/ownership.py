"""Which engine process owns an execution, and whether that owner is still alive.

Every engine has an owner id ``host:pid:nonce``. It claims an execution (a compare-and-swap
in the store) before it drives it and renews the lease while it does, so two processes on one
database never run the same execution. Another process may take an execution over when the
lease has run out, or at once when the owner was a process on this host that no longer exists
(killed with -9, say), which is what makes ``orchestrion resume`` immediate after a crash.
In scale-out mode an owner whose heartbeat the cluster no longer sees is gone as well.

``Ownership`` is the one place that decides whether an execution is held by another live
engine and that claims an execution for this one.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrion.errors import InvalidTransition
from orchestrion.store.base import TriggerClaim

if TYPE_CHECKING:
    from orchestrion.dispatch.base import ClusterDispatcher
    from orchestrion.store.base import ExecutionRecord, Store

TriggerInputs = tuple[dict[str, Any], dict[str, dict[str, Any]], str | None]
"""A trigger's inputs, node overrides and correlation id."""

__all__ = ["Ownership", "new_owner_id", "owner_alive_here", "owner_is_dead"]

_HOST = socket.gethostname()


def new_owner_id() -> str:
    return f"{_HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def owner_alive_here(owner: str) -> bool | None:
    """True/False when ``owner`` is a process of this host; None when it is elsewhere."""
    parts = owner.split(":")
    if len(parts) < 3:
        return None
    host, pid_text = ":".join(parts[:-2]), parts[-2]
    if host != _HOST or not pid_text.isdigit():
        return None
    pid = int(pid_text)
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owner_is_dead(owner: str | None, lease_until: float | None, now: float) -> bool:
    """Whether an execution held by ``owner`` until ``lease_until`` may be taken over."""
    if owner is None:
        return True
    if lease_until is not None and lease_until < now:
        return True
    return owner_alive_here(owner) is False


class Ownership:
    """This engine's claims on executions, and its view of who else holds one.

    ``cluster`` (set at start in scale-out mode) says which engines' heartbeats were seen
    lately: an owner missing from it is gone even while its lease runs, unless it claimed or
    renewed the execution after the heartbeats were looked at (it started since).
    """

    def __init__(self, owner: str, lease_seconds: float, store: Callable[[], Store]) -> None:
        self.owner = owner
        self.cluster: ClusterDispatcher | None = None
        self._lease_seconds = lease_seconds
        self._store = store

    def held_elsewhere(self, record: ExecutionRecord, now: float | None = None) -> bool:
        """Whether another engine that is still alive drives ``record``."""
        owner = record.owner
        if owner is None or owner == self.owner:
            return False
        if owner_is_dead(owner, record.lease_until, time.time() if now is None else now):
            return False
        cluster = self.cluster
        alive = cluster.live_owners() if cluster is not None else None
        if alive is None or owner in alive:
            return True
        assert cluster is not None
        # Not seen at the last look at the heartbeats: gone, unless it claimed or renewed
        # the execution after that look (a process started since, not yet seen beating).
        renewed_at = (record.lease_until or 0.0) - self._lease_seconds
        return renewed_at >= cluster.owners_seen_at()

    async def _claim(
        self, execution_id: str, expected: str | None, now: float, inputs: TriggerInputs | None
    ) -> bool:
        if inputs is None:
            return await self.claim(execution_id, expected, now)
        lease_until = now + self._lease_seconds
        claim = TriggerClaim(execution_id, self.owner, lease_until, expected, now, *inputs)
        return await self._store().claim_to_trigger(claim)

    async def claim(
        self, execution_id: str, expected: str | None, now: float | None = None
    ) -> bool:
        """Make this engine the owner of the execution if its owner is still ``expected`` (or
        its lease ran out): the store's compare-and-swap. False when another won it."""
        now = time.time() if now is None else now
        return await self._store().claim_execution(
            execution_id, self.owner, now + self._lease_seconds, expected, now
        )

    async def claim_for(
        self,
        record: ExecutionRecord,
        verb: str,
        expected: str | None,
        inputs: TriggerInputs | None = None,
    ) -> None:
        """Take ``record`` over to carry out ``verb``, or explain who holds it; with
        ``inputs`` (a trigger's), set them in the same write as the claim."""
        now = time.time()
        if record.owner == self.owner:
            expected = self.owner
        if self.held_elsewhere(record, now) or not await self._claim(
            record.id, expected, now, inputs
        ):
            raise InvalidTransition(
                f"cannot {verb} execution {record.id}: it is being run by another process "
                f"({record.owner or 'unknown'}); {verb} it there, or stop that process first"
            )
        record.owner = self.owner
