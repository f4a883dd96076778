"""The reaper: gives work stuck with dead or hung consumers back, and parks poison messages.

Every ``reaper_interval`` seconds it sweeps:

- task streams: entries pending with a worker whose heartbeat has been gone for a heartbeat
  period (claimed with XCLAIM) or idle longer than their handler's timeout
  (``reaper_handler_idle``, else ``reaper_idle_seconds``; XAUTOCLAIM: no live worker renewed
  them, see below) are added again with one
  more delivery counted, and the old entry is acknowledged and deleted in the same
  transaction. An entry delivered ``max_deliveries`` times goes to the dead letter queue
  instead;
- inbox streams of orchestrators whose heartbeat has been gone for two periods: their entries
  move to the shared completions stream, where the orchestrator that takes the execution
  over reads them;
- the completions stream: entries pending with a dead orchestrator are added again.

A live worker renews its hold on the entries it runs (``cluster/leases.py``), so the idle
timeout takes only entries nobody looks after any more; an attempt that runs long on a live
worker stays with it, bounded by its node's ``timeout``.

Any number of reapers may run: a claim moves an entry to one of them only. Each one beats
(``{p}:reaper:{host}:{pid}``, a key with a time to live, with the time of its last sweep),
so ``/health`` can tell when none is running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from orchestrion.cluster.connection import connect_redis, ensure_group
from orchestrion.cluster.dlq import DeadLetters
from orchestrion.cluster.streams import ORCHESTRATOR_GROUP, WORKER_GROUP, Fields, StreamNames, text
from orchestrion.errors import ErrorCategory

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.settings import Settings

__all__ = ["Reaper", "Sweep"]

logger = logging.getLogger(__name__)

_BATCH = 500
_INBOX_GRACE = 2  # sweeps an inbox must look orphaned before it is moved
_DELETE_IF_EMPTY = """
if redis.call('XLEN', KEYS[1]) == 0 then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True)
class Sweep:
    """What one sweep did."""

    reclaimed: int = 0
    parked: int = 0
    moved: int = 0  # entries moved out of dead orchestrators' inboxes

    def __bool__(self) -> bool:
        return bool(self.reclaimed or self.parked or self.moved)


class Reaper:
    """Sweeps Redis for stuck entries; see the module docstring."""

    def __init__(self, url: str, settings: Settings, *, redis: Redis | None = None) -> None:
        self.url = url
        self.settings = settings
        self.names = StreamNames(settings.redis_prefix)
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.id = f"reaper:{self.name}"
        self.last_sweep_at: float | None = None
        self._redis = redis
        self._suspects: dict[str, int] = {}
        self._missing: dict[str, float] = {}  # consumer -> when its heartbeat was first missed

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            self._redis = connect_redis(self.url)
        return self._redis

    async def close(self) -> None:
        if self._redis is not None:
            with contextlib.suppress(Exception):  # gone at once: /health need not wait
                await self._redis.delete(self.names.reaper(self.name))
            await self._redis.aclose()
            self._redis = None

    async def beat(self) -> None:
        """Say this reaper is alive, for ``/health`` (three heartbeat periods to live)."""
        info = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "interval": self.settings.reaper_interval,
            "last_sweep_at": self.last_sweep_at,
            "at": time.time(),
        }
        ttl = max(1, int(self.settings.heartbeat_seconds * 3 + 0.999))
        await self.redis.set(self.names.reaper(self.name), json.dumps(info), ex=ttl)

    async def _heartbeat(self) -> None:
        from redis.exceptions import RedisError

        while True:
            try:
                await self.beat()
            except (RedisError, OSError) as exc:
                logger.warning("reaper heartbeat failed: %s", exc)
            await asyncio.sleep(self.settings.heartbeat_seconds)

    async def run_until(self, stop: asyncio.Event) -> None:
        from redis.exceptions import RedisError

        logger.info("reaper %s sweeping every %gs", self.id, self.settings.reaper_interval)
        beating = asyncio.create_task(self._heartbeat(), name="orchestrion-reaper-heartbeat")
        try:
            while not stop.is_set():
                try:
                    done = await self.sweep()
                    self.last_sweep_at = time.time()
                    if done:
                        logger.info(
                            "reaper: %d reclaimed, %d parked, %d moved",
                            done.reclaimed,
                            done.parked,
                            done.moved,
                        )
                except (RedisError, OSError) as exc:
                    logger.warning("reaper sweep failed (%s); retrying", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.reaper_interval)
        finally:
            beating.cancel()
            await asyncio.gather(beating, return_exceptions=True)
            await self.close()

    async def sweep(self) -> Sweep:
        report = Sweep()
        workers = await self._alive(self.names.worker_pattern, self.names.worker(""))
        orchestrators = await self._alive(
            self.names.orchestrator_pattern, self.names.orchestrator("")
        )
        async for key in self.redis.scan_iter(match=self.names.task_pattern, _type="stream"):
            await self._sweep_tasks(text(key), workers, report)
        await self._sweep_inboxes(orchestrators, report)
        await self._sweep_completions(orchestrators, report)
        return report

    async def _alive(self, pattern: str, prefix: str) -> set[str]:
        found = set()
        async for key in self.redis.scan_iter(match=pattern, count=1000):
            found.add(text(key)[len(prefix) :])
        return found

    # ------------------------------------------------------------------ task streams

    async def _sweep_tasks(self, stream: str, workers: set[str], report: Sweep) -> None:
        redis = self.redis
        try:
            pending = await self._pending(stream, WORKER_GROUP)
        except Exception:  # no group yet (nobody serves this stream): nothing is pending
            return
        dead = [p["message_id"] for p in pending if self._gone(text(p["consumer"]), workers)]
        entries: list[tuple[bytes, Fields | None]] = []
        if dead:
            entries += await self._claim(stream, WORKER_GROUP, dead)
        handler = stream.split(":tasks:", 1)[-1].split("+", 1)[0]
        idle = self.settings.reaper_handler_idle.get(handler, self.settings.reaper_idle_seconds)
        reply: list[Any] = await redis.xautoclaim(
            stream, WORKER_GROUP, self.id, int(idle * 1000), "0-0", count=_BATCH
        )
        entries += reply[1] if reply else []
        seen: set[bytes] = set()
        for entry_id, fields in entries:
            if fields is None or entry_id in seen:
                continue  # deleted meanwhile (XCLAIM returns nil fields for those)
            seen.add(entry_id)
            await self._requeue(stream, entry_id, fields, report)
        await self._forget_consumers(stream, WORKER_GROUP, workers | {self.id})
        if len(self._missing) > 10_000:  # consumers long forgotten: keep the map small
            self._missing.clear()

    def _gone(self, consumer: str, alive: set[str], periods: float = 1.0) -> bool:
        """A consumer is gone when its heartbeat has been missing for ``periods`` heartbeat
        periods: right after Redis lost its data every heartbeat is missing until the next
        beat, and live consumers' work must not be taken from them then."""
        now = time.monotonic()
        if consumer in alive:
            self._missing.pop(consumer, None)
            return False
        since = self._missing.setdefault(consumer, now)
        return now - since >= self.settings.heartbeat_seconds * periods

    async def _pending(self, stream: str, group: str) -> list[dict[str, Any]]:
        return cast(
            "list[dict[str, Any]]",
            await self.redis.xpending_range(stream, group, "-", "+", _BATCH),
        )

    async def _claim(
        self, stream: str, group: str, ids: list[Any]
    ) -> list[tuple[bytes, Fields | None]]:
        return cast(
            "list[tuple[bytes, Fields | None]]",
            await self.redis.xclaim(stream, group, self.id, 0, ids),
        )

    async def _requeue(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], report: Sweep
    ) -> None:
        raw = fields.get(b"m", b"").decode(errors="replace")
        try:
            data = json.loads(raw)
            deliveries = int(data.get("deliveries", 1))
        except (ValueError, AttributeError, TypeError):
            await DeadLetters(self.redis, self.names).park_raw(
                stream,
                entry_id,
                raw,
                category=ErrorCategory.SCHEMA,
                message="unreadable task message",
            )
            report.parked += 1
            return
        if deliveries >= self.settings.max_deliveries:
            await DeadLetters(self.redis, self.names).park(
                stream,
                entry_id,
                data,
                raw,
                category=ErrorCategory.DELIVERY,
                message=f"delivered {deliveries} times without an answer"
                " (its workers died or hung on it)",
            )
            report.parked += 1
            logger.warning("parked %s of %s after %d deliveries", entry_id, stream, deliveries)
            return
        data["deliveries"] = deliveries + 1
        data.setdefault("first_sent_at", data.get("sent_at"))
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(stream, {"m": json.dumps(data, separators=(",", ":"))})
            pipe.xack(stream, WORKER_GROUP, entry_id)
            pipe.xdel(stream, entry_id)
            await pipe.execute()
        report.reclaimed += 1

    async def _forget_consumers(self, stream: str, group: str, alive: set[str]) -> None:
        """Drop consumers that are gone and hold nothing, so the group does not grow."""
        try:
            consumers = await self.redis.xinfo_consumers(stream, group)
        except Exception:
            return
        for consumer in consumers:
            name = text(consumer["name"])
            if name not in alive and int(consumer.get("pending", 0)) == 0:
                await self.redis.xgroup_delconsumer(stream, group, name)

    # ------------------------------------------------------------------ orchestrators

    async def _sweep_inboxes(self, orchestrators: set[str], report: Sweep) -> None:
        redis = self.redis
        orphans = set()
        async for key in redis.scan_iter(match=self.names.inbox_pattern, _type="stream"):
            stream = text(key)
            # Two periods: an orchestrator that just saw Redis lose its data beats again
            # only after re-dispatching what was in flight.
            if self._gone(self.names.owner_of_inbox(stream), orchestrators, periods=2):
                orphans.add(stream)
        # An inbox must look orphaned on two sweeps in a row: an orchestrator that is just
        # starting has its group before its first heartbeat is seen here.
        self._suspects = {s: self._suspects.get(s, 0) + 1 for s in orphans}
        for stream, seen in list(self._suspects.items()):
            if seen < _INBOX_GRACE:
                continue
            while True:
                entries = cast(
                    "list[tuple[bytes, Fields]]", await redis.xrange(stream, count=_BATCH)
                )
                if not entries:
                    break
                async with redis.pipeline(transaction=True) as pipe:
                    for entry_id, fields in entries:
                        pipe.xadd(self.names.completions, fields)
                        pipe.xdel(stream, entry_id)
                    await pipe.execute()
                report.moved += len(entries)
            # Only if still empty: a worker may have just answered an attempt the dead
            # orchestrator dispatched; that entry is moved on the next sweep.
            await redis.eval(_DELETE_IF_EMPTY, 1, stream)
            self._suspects.pop(stream, None)

    async def _sweep_completions(self, orchestrators: set[str], report: Sweep) -> None:
        redis = self.redis
        stream = self.names.completions
        await ensure_group(redis, stream, ORCHESTRATOR_GROUP)
        pending = await self._pending(stream, ORCHESTRATOR_GROUP)
        dead = [p["message_id"] for p in pending if self._gone(text(p["consumer"]), orchestrators)]
        if dead:
            entries = await self._claim(stream, ORCHESTRATOR_GROUP, dead)
            async with redis.pipeline(transaction=True) as pipe:
                for entry_id, fields in entries:
                    if fields is None:
                        continue
                    pipe.xadd(stream, fields)
                    pipe.xack(stream, ORCHESTRATOR_GROUP, entry_id)
                    pipe.xdel(stream, entry_id)
                    report.moved += 1
                await pipe.execute()
        await self._forget_consumers(stream, ORCHESTRATOR_GROUP, orchestrators | {self.id})
