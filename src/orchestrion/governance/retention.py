"""``RetentionSweeper``: the periodic purge of ``retention.days`` in long-running servers.

``orchestrion serve`` runs one when the policy sets ``retention.days``: a first sweep shortly
after start, then one every ``interval`` seconds, each deleting executions that finished more
than the retention ago (``AuditLog.purge``: node runs and journal events go with them, audit
records stay, the purge is audited). A failed sweep is logged and tried again next time. Other
deployments run ``orchestrion purge`` from cron instead.

Several processes serve one database (``serve --workers N``, API replicas in scale-out): each
runs a sweeper, and one sweeps at a time. Before a sweep it takes a lease in the database
(``claim``, the ``leases`` table the scheduler's lease lives in) and sweeps only while it holds
it. The holder renews it at each sweep; the others find it held and skip theirs, so there is
one sweep, and one audit record of it, per interval for the whole service. A holder that dies
stops renewing, and another takes the lease once it ran out (an interval and a minute after
its last sweep); one that stops gracefully gives it up at once (``release``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

__all__ = ["Claim", "Purger", "Release", "RetentionSweeper"]

logger = logging.getLogger(__name__)

DAY = 86400.0
# Seconds a holder keeps the lease past its next sweep's time: its sweep may run late (the
# previous one was slow, the loop busy) without another process sweeping meanwhile.
_LEASE_MARGIN = 60.0

Claim = Callable[[float, float], Awaitable[bool]]
"""``claim(lease_until, now)``: take or renew the sweep lease; True when this process holds it."""
Release = Callable[[], Awaitable[None]]
"""Give the sweep lease up, if this process holds it."""


class Purger(Protocol):
    """What a sweep needs of the audit log (``store.audit_log.AuditLog`` is one)."""

    @property
    def retention_days(self) -> int | None:
        """``retention.days`` of the policy; None keeps everything."""

    async def purge(self, finished_before: float, *, actor: str | None = None) -> int:
        """Delete executions finished before ``finished_before``; how many went."""


class RetentionSweeper:
    """Purges what is older than ``max_age`` seconds every ``interval`` seconds."""

    def __init__(
        self,
        audit: Purger,
        max_age: float,
        *,
        interval: float = 3600.0,
        delay: float = 60.0,
        lease: tuple[Claim, Release] | None = None,
    ) -> None:
        self.audit = audit
        self.max_age = max_age
        self.interval = interval
        self.delay = delay  # the first sweep waits this long: start-up stays quick
        self.lease = lease  # None: this process alone sweeps its database
        self.sweeps = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_policy(
        cls,
        audit: Purger,
        *,
        interval: float = 3600.0,
        delay: float = 60.0,
        lease: tuple[Claim, Release] | None = None,
    ) -> RetentionSweeper | None:
        """A sweeper for the policy's ``retention.days``, or None when it keeps everything."""
        days = audit.retention_days
        if days is None:
            return None
        return cls(audit, days * DAY, interval=interval, delay=delay, lease=lease)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="orchestrion-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if self.lease is not None:
                try:
                    await self.lease[1]()  # another process sweeps next, without waiting
                except Exception:  # the lease runs out by itself
                    logger.warning("retention lease not released", exc_info=True)

    async def _run(self) -> None:
        await asyncio.sleep(self.delay)
        while True:
            try:
                if await self._holding():
                    await self.audit.purge(time.time() - self.max_age, actor="retention")
                    self.sweeps += 1
            except Exception:  # the next sweep tries again; the server goes on
                logger.exception("retention purge failed")
            await asyncio.sleep(self.interval)

    async def _holding(self) -> bool:
        if self.lease is None:
            return True
        now = time.time()
        return await self.lease[0](now + self.interval + _LEASE_MARGIN, now)
