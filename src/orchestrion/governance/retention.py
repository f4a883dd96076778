"""``RetentionSweeper``: the periodic purge of ``retention.days`` in long-running servers.

``orchestrion serve`` runs one when the policy sets ``retention.days``: a first sweep shortly
after start, then one every ``interval`` seconds, each deleting executions that finished more
than the retention ago (``AuditLog.purge``: node runs and journal events go with them, audit
records stay, the purge is audited). A failed sweep is logged and tried again next time. Other
deployments run ``orchestrion purge`` from cron instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Protocol

__all__ = ["Purger", "RetentionSweeper"]

logger = logging.getLogger(__name__)

DAY = 86400.0


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
        self, audit: Purger, max_age: float, *, interval: float = 3600.0, delay: float = 60.0
    ) -> None:
        self.audit = audit
        self.max_age = max_age
        self.interval = interval
        self.delay = delay  # the first sweep waits this long: start-up stays quick
        self.sweeps = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_policy(cls, audit: Purger, **kwargs: float) -> RetentionSweeper | None:
        """A sweeper for the policy's ``retention.days``, or None when it keeps everything."""
        days = audit.retention_days
        return None if days is None else cls(audit, days * DAY, **kwargs)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="orchestrion-retention")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        await asyncio.sleep(self.delay)
        while True:
            try:
                await self.audit.purge(time.time() - self.max_age, actor="retention")
            except Exception:  # the next sweep tries again; the server goes on
                logger.exception("retention purge failed")
            self.sweeps += 1
            await asyncio.sleep(self.interval)
