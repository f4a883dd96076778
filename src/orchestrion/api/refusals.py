"""Requests refused before their caller was authenticated, counted and audited in summary.

A caller without a valid API key names nobody: writing one audit record per such request
would let anyone grow the trail at wire speed and put strings of their choosing in it. These
requests are counted here instead, per client address and status, and ``flush`` writes one
``api.refused`` record per window (``ORCHESTRION_REFUSAL_SUMMARY_SECONDS``, 60 s by default)
in which anything was refused, whatever the number of requests or addresses:

- actor ``unauthenticated``, outcome ``refused``;
- details: the window, the number of requests, their statuses, and the busiest addresses
  (at most ``_LISTED``) with their counts; the rest are summed up.

Nothing the client wrote is kept: addresses are parsed IP addresses, statuses are numbers.
The table of addresses in one window is bounded too; addresses beyond it are only summed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from orchestrion.store.audit_log import AuditLog

__all__ = ["REFUSED_ACTION", "REFUSED_ACTOR", "RefusalSummary"]

logger = logging.getLogger(__name__)

REFUSED_ACTION = "api.refused"
REFUSED_ACTOR = "unauthenticated"
_LISTED = 20  # addresses named in one record
_TRACKED = 10_000  # addresses counted one by one in a window; the others only in the total


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")


class RefusalSummary:
    """Counts of refused requests by address and status, one audit record per window."""

    def __init__(self, window: float, *, clock: Callable[[], float] = time.time) -> None:
        self.window = window
        self._clock = clock
        self._reset()

    def _reset(self) -> None:
        self._since = self._clock()
        self._total = 0
        self._statuses: Counter[int] = Counter()
        self._by_address: dict[str, Counter[int]] = {}
        self._untracked = 0

    @property
    def pending(self) -> int:
        """Requests counted since the last record."""
        return self._total

    def note(self, address: str, status: int) -> None:
        """Count one refused request from ``address`` (a parsed IP address) with ``status``."""
        self._total += 1
        self._statuses[status] += 1
        counts = self._by_address.get(address)
        if counts is None:
            if len(self._by_address) >= _TRACKED:
                self._untracked += 1
                return
            counts = self._by_address[address] = Counter()
        counts[status] += 1

    def details(self) -> dict[str, Any]:
        """What the next record will say (the counts since the last one)."""
        ranked = sorted(self._by_address.items(), key=lambda item: (-item[1].total(), item[0]))
        listed = ranked[:_LISTED]
        rest = ranked[_LISTED:]
        return {
            "from": _iso(self._since),
            "to": _iso(self._clock()),
            "requests": self._total,
            "statuses": {str(code): n for code, n in sorted(self._statuses.items())},
            "addresses": [
                {
                    "remote": address,
                    "requests": counts.total(),
                    "statuses": {str(code): n for code, n in sorted(counts.items())},
                }
                for address, counts in listed
            ],
            "other_addresses": len(rest) + (1 if self._untracked else 0),
            "other_requests": sum(c.total() for _, c in rest) + self._untracked,
        }

    async def flush(self, audit: AuditLog) -> None:
        """Write the summary of the requests counted since the last one, if any."""
        if not self._total:
            self._reset()
            return
        details = self.details()
        self._reset()  # before the write: a slow store must not make a window count twice
        if not audit.enabled:
            return
        try:
            await audit.record(
                REFUSED_ACTION, actor=REFUSED_ACTOR, outcome="refused", details=details
            )
        except Exception:
            logger.exception(
                "cannot write the audit summary of %d refused requests", details["requests"]
            )

    async def run(self, audit: AuditLog) -> None:
        """Flush every ``window`` seconds until cancelled (the owner flushes once more then,
        while the store is still open)."""
        while True:
            await asyncio.sleep(self.window)
            await self.flush(audit)
