"""A worker's hold on the task entries it runs, and on those it read but could not finish.

Redis counts how long an entry has been pending with its consumer without news (its idle
time); the reaper gives an entry idle longer than ``reaper_idle_seconds`` (or its handler's
``reaper_handler_idle``) to another worker. A worker that is alive and still running an
attempt keeps its entry: every ``renew_every`` seconds (the heartbeat period, or a quarter
of the shortest idle timeout when that is shorter) one script per stream claims the entries
it runs again for itself, with ``XCLAIM ... 0 ... JUSTID``: the idle time starts over, and
no delivery is counted. The script renews only entries still pending with this worker: one a
reaper took meanwhile stays taken.

What bounds an attempt, then, is the attempt itself: a node's ``timeout`` (or a cancel)
ends it, and its entry is answered. A worker whose process hangs as a whole stops renewing
and stops beating, and the reaper takes its entries after a heartbeat period; a worker that
is killed leaves them to be reclaimed the same way.

``stranded`` finds entries a worker holds but is not running (Redis went away while it
checked or answered one), to be taken up again by that worker after ``OWN_RECLAIM_IDLE``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, cast

from orchestrion.cluster.streams import WORKER_GROUP, Fields, text

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.settings import Settings

__all__ = ["OWN_RECLAIM_IDLE", "renew", "renew_every", "stranded"]

logger = logging.getLogger(__name__)

OWN_RECLAIM_IDLE = 10.0
"""Seconds an entry a worker holds but is not handling waits before it is taken up again."""

_CHUNK = 200  # entry ids per script call

# KEYS[1]: the stream; ARGV: group, consumer, entry ids. Claims again (idle time back to 0,
# no delivery counted) the entries still pending with this consumer; how many it renewed.
_RENEW = """
local claim = {'XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0}
for i = 3, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1, ARGV[2])
  if #held > 0 then claim[#claim + 1] = ARGV[i] end
end
local renewed = #claim - 5
if renewed == 0 then return 0 end
claim[#claim + 1] = 'JUSTID'
redis.call(unpack(claim))
return renewed
"""


def renew_every(settings: Settings) -> float:
    """Seconds between renewals: well under the shortest idle timeout the reaper applies."""
    idle = min([settings.reaper_idle_seconds, *settings.reaper_handler_idle.values()])
    return max(0.05, min(settings.heartbeat_seconds, idle / 4))


async def renew(redis: Redis, consumer: str, entries: Iterable[tuple[str, bytes]]) -> int:
    """Renew ``consumer``'s hold on ``entries`` (stream, entry id); how many it still held."""
    by_stream: dict[str, list[bytes]] = {}
    for stream, entry_id in entries:
        by_stream.setdefault(stream, []).append(entry_id)
    renewed = 0
    for stream, ids in by_stream.items():
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            renewed += int(await redis.eval(_RENEW, 1, stream, WORKER_GROUP, consumer, *chunk))
    return renewed


async def stranded(
    redis: Redis, streams: Iterable[str], consumer: str, running: set[tuple[str, bytes]]
) -> list[tuple[str, bytes, Fields]]:
    """Entries pending with ``consumer`` for ``OWN_RECLAIM_IDLE`` that it does not run
    (``running``), claimed again by it, with their fields."""
    idle_ms = int(OWN_RECLAIM_IDLE * 1000)
    found: list[tuple[str, bytes, Fields]] = []
    for stream in streams:
        pending = await redis.xpending_range(
            stream, WORKER_GROUP, "-", "+", 100, consumername=consumer, idle=idle_ms
        )
        ids: list[Any] = [
            p["message_id"] for p in pending if (stream, p["message_id"]) not in running
        ]
        if not ids:
            continue
        claimed = cast(
            "list[tuple[bytes, Fields | None]]",
            await redis.xclaim(stream, WORKER_GROUP, consumer, idle_ms, ids),
        )
        for entry_id, fields in claimed:
            if fields is not None and (stream, entry_id) not in running:
                logger.warning("taking up %s of %s again", text(entry_id), stream)
                found.append((stream, entry_id, fields))
    return found
