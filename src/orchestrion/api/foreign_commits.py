"""Wake event and log streams for what other server processes commit on the same database.

A stream is woken by the hub when this process's engine commits (``api/hub.py``); what another
process writes wakes no hub here, and a stream would only see it at its next poll
(``sse_poll``, 5 s by default). With several server processes on one database (``orchestrion
serve --workers N``) every execution is driven by one of them and followed through any, so each
process reads, every ``_INTERVAL`` seconds while streams are open, which executions gained
events or log lines since its last look (two index lookups when nothing changed) and wakes
their streams.
"""

from __future__ import annotations

import asyncio
import logging

from orchestrion.api.context import ApiContext
from orchestrion.errors import OrchestrionError
from orchestrion.store.base import Marks

__all__ = ["follow_foreign_commits"]

logger = logging.getLogger(__name__)

_INTERVAL = 0.1  # seconds: the added latency of a stream following another process


async def follow_foreign_commits(ctx: ApiContext) -> None:
    """Until cancelled, wake the streams of executions other processes wrote to."""
    reads = ctx.engine.reads
    marks: Marks | None = None
    while True:
        # With no stream open only the marks are read (two index lookups): what was written
        # before a stream opened is in its first read.
        watching = ctx.hub.watching and marks is not None
        try:
            now, touched = await reads.touched_since(marks if watching else None)
        except OrchestrionError:  # the next look covers what this one missed
            logger.warning("reading other processes' commits failed; retrying", exc_info=True)
        else:
            if watching:
                ctx.hub.notify_written(touched)
            marks = now
        await asyncio.sleep(_INTERVAL)
