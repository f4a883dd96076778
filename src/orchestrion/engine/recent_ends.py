"""The executions that ended here lately, started here and never waiting.

Their results need no wait times read unless the store shows a later end (a retry, here or
elsewhere; ``Outcomes``), and for a second their committed records are kept
(``live_result.py``): a caller that started one usually waits for it at once, often after
its end, and reads nothing back. The oldest are forgotten first; ordered dicts, because a
plain dict steps over every slot its front's removed keys left to find its first key.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrion.engine.live import LiveExecution

__all__ = ["RecentEnds"]

# How many ended executions ``never_waited`` remembers.
_NEVER_WAITED_KEPT = 10_000
# How many of them, and for how long (seconds), ``ended_here`` keeps.
_ENDED_KEPT = 1_000
_ENDED_KEPT_FOR = 1.0


class RecentEnds:
    """``never_waited``: execution id -> when it ended; ``ended_here``: execution id ->
    (its live execution, when it ended), for ``_ENDED_KEPT_FOR`` s."""

    def __init__(self) -> None:
        self.never_waited: OrderedDict[str, float] = OrderedDict()
        self.ended_here: OrderedDict[str, tuple[LiveExecution, float]] = OrderedDict()
        self._forget: asyncio.TimerHandle | None = None

    def ended(self, live: LiveExecution) -> None:
        """Note that ``live`` ended (now); one that ever waited is no longer kept."""
        never_waited = self.never_waited
        if live.waited:
            never_waited.pop(live.record.id, None)
            return
        if len(never_waited) >= _NEVER_WAITED_KEPT:
            never_waited.popitem(last=False)
        ended = never_waited[live.record.id] = time.time()
        kept = self.ended_here
        kept.pop(live.record.id, None)  # ended again: the newest end last
        kept[live.record.id] = (live, ended)
        if len(kept) > _ENDED_KEPT:
            kept.popitem(last=False)
        if self._forget is None:
            self._forget = asyncio.get_running_loop().call_later(_ENDED_KEPT_FOR, self._drop)

    def clear(self) -> None:
        """Keep no records any more (the engine stops driving)."""
        self.ended_here.clear()
        if self._forget is not None:
            self._forget.cancel()
            self._forget = None

    def _drop(self) -> None:
        """Forget the ended executions kept longer than ``_ENDED_KEPT_FOR``."""
        self._forget = None
        kept = self.ended_here
        oldest = time.time() - _ENDED_KEPT_FOR
        while kept and next(iter(kept.values()))[1] <= oldest:
            kept.popitem(last=False)
        if kept:
            self._forget = asyncio.get_running_loop().call_later(_ENDED_KEPT_FOR, self._drop)
