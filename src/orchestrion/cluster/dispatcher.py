"""Scale-out dispatch through Redis Streams: the orchestrator's side.

``dispatch`` adds each attempt to the task stream of its handler (and capabilities) with a
guard key set in the same script, so an attempt is added once even when a takeover recovers
it again (``cluster/sending.py``). Workers (``cluster/worker.py``) answer on this engine's
inbox stream; the shared completions stream carries what is meant for whichever orchestrator
drives an execution. Both are read in the consumer group ``orchestrators``; an entry is
acknowledged only once the engine's turn that applied it is committed, so a crash in between
redelivers it (the machine ignores what it has already applied; ``cluster/entries.py``).
Entries left pending for a while (a commit failed, the reading orchestrator died) are claimed
again.

Handlers that need the engine itself (``workflow`` nodes, a ``map`` of sub-workflows) run in
this process on the ``local`` dispatcher. A heartbeat key tells the others this orchestrator
is alive; the epoch key tells it when Redis lost its data, and then everything in flight is
dispatched again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from orchestrion.cluster.connection import (
    connect_redis,
    ensure_group,
    queue_errors,
    stream_lost,
)
from orchestrion.cluster.entries import EntryHandler, track
from orchestrion.cluster.replies import RepliesOnRedis
from orchestrion.cluster.sending import TaskSender, engine_bound, forward_event, handler_name
from orchestrion.cluster.streams import (
    ORCHESTRATOR_GROUP,
    Entries,
    StreamNames,
    StreamReply,
    text,
)
from orchestrion.core.events import Event
from orchestrion.core.task_kinds import TaskKind
from orchestrion.dispatch.base import (
    ClusterDispatcher,
    Dispatcher,
    EventRoute,
    EventSink,
    TaskMessage,
)
from orchestrion.errors import OrchestrionError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.cluster.on_wire import WireSealer
    from orchestrion.settings import Settings

__all__ = ["RedisDispatcher"]

logger = logging.getLogger(__name__)

_READ_COUNT = 1000
_RECLAIM_IDLE_MS = 10_000
_SWEEP_STARTS_AFTER = 5.0  # seconds a start may take to reach the queue before it is swept


class RedisDispatcher(RepliesOnRedis, ClusterDispatcher):
    """Sends attempts to task streams and routes the events that come back (see module).

    A ``ClusterDispatcher`` (``dispatch/base.py``), declared so that mypy checks every method
    of the protocol is here with its signature: the engine binds it an ``EventRoute``, and
    ``cluster_of`` finds it clustered. ``start`` and ``forward``, which the engine awaits,
    raise Redis failures as ``DispatchError``.
    """

    def __init__(
        self,
        url: str,
        settings: Settings,
        *,
        local: Dispatcher | None = None,
        canonical: Callable[[str], str] = lambda name: name,
        sealer: WireSealer | None = None,
    ) -> None:
        self.url = url
        self.settings = settings
        self.names = StreamNames(settings.redis_prefix)
        self._local = local
        # Classified tasks and forwarded payloads are encrypted on Redis (governance/on_wire).
        self._sealer = sealer
        self._canonical = canonical
        self._redis: Redis | None = None
        self._router: EventRoute | None = None
        self._entries: EntryHandler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._acks: set[asyncio.Task[None]] = set()
        self._sender: TaskSender | None = None
        self._epoch: str | None = None
        self._committed: set[str] = set()
        self._alive: set[str] | None = None
        self._alive_at = 0.0  # when the heartbeats behind _alive were looked at
        self._closing = False
        # Pending starts are swept about every few seconds, whatever the heartbeat period.
        self._sweep_every = max(1, round(_SWEEP_STARTS_AFTER / 2 / settings.heartbeat_seconds))

    # ------------------------------------------------------------------ lifecycle

    def bind_router(self, router: EventRoute) -> None:
        self._router = router
        self._entries = EntryHandler(
            lambda: self.redis, router, self._sealer, self._acks, self.names
        )

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("dispatcher not started")
        return self._redis

    @property
    def inbox(self) -> str:
        assert self._router is not None, "bind_router first"
        return self.names.inbox(self._router.owner)

    async def start(self, on_event: EventSink) -> None:
        if self._router is None:
            raise RuntimeError("RedisDispatcher needs an engine (bind_router) before start")
        if self._local is not None:
            await self._local.start(on_event)
        self._redis = connect_redis(self.url)
        self._sender = TaskSender(
            self._redis,
            self.names,
            guard_ms=int(self.settings.guard_ttl * 1000),
            canonical=self._canonical,
            sealer=self._sealer,
        )
        self._closing = False
        with queue_errors():
            await self._beat()  # alive before the inbox exists, so the reaper leaves it alone
            await self._prepare()
        self._tasks = [
            asyncio.create_task(self._hand_over_again(), name="orchestrion-redis-handover"),
            asyncio.create_task(self._consume(), name="orchestrion-redis-consume"),
            asyncio.create_task(self._housekeeping(), name="orchestrion-redis-housekeeping"),
        ]

    async def _prepare(self) -> None:
        """Groups on the inbox and the shared stream; remember (or set) the epoch."""
        redis = self.redis
        await ensure_group(redis, self.inbox, ORCHESTRATOR_GROUP)
        await ensure_group(redis, self.names.completions, ORCHESTRATOR_GROUP)
        await redis.set(self.names.epoch, uuid.uuid4().hex, nx=True)
        epoch = await redis.get(self.names.epoch)
        self._epoch = text(epoch) if epoch else None

    async def close(self, grace: float = 0.0) -> None:
        self._closing = True
        if self._local is not None:
            await self._local.close(grace)
        if self._acks:
            await asyncio.wait(list(self._acks), timeout=max(grace, 1.0))
        # None may still use the client when it closes (it would open a connection again
        # that nothing closes): what has not finished by now is given up.
        for task in (*self._acks, *self._tasks):
            task.cancel()
        await asyncio.gather(*self._acks, *self._tasks, return_exceptions=True)
        self._tasks = []
        if self._redis is not None:
            with contextlib.suppress(Exception):
                await self._redis.delete(self.names.orchestrator(self._owner))
            await self._redis.aclose()
            self._redis = None

    @property
    def _owner(self) -> str:
        assert self._router is not None
        return self._router.owner

    def in_flight(self) -> int:
        return (self._local.in_flight() if self._local is not None else 0) + len(self._acks)

    def can_run_inline(self, handler: str, config: Mapping[str, Any]) -> bool:
        # A handler with nothing to wait for and no effect outside the engine runs in the
        # orchestrator's turn, as embedded: no round trip through a worker for a condition.
        return self._local is not None and self._local.can_run_inline(handler, config)

    def run_inline(self, task: TaskMessage) -> list[Event] | None:
        if self._local is None or task.capabilities:
            return None  # a node that asks for capabilities runs on a worker that has them
        return self._local.run_inline(task)

    def record_listener(self, execution_id: str, records: list[Any]) -> None:
        """Engine listener: the executions committed in one loop tick are published once, so
        API processes wake their event streams at once instead of polling the journal."""
        if not self._committed:
            asyncio.get_running_loop().call_soon(self._publish_commits)
        self._committed.add(execution_id)

    def _publish_commits(self) -> None:
        ids, self._committed = sorted(self._committed), set()
        if ids and self._redis is not None and not self._closing:
            track(self._acks, self._publish(json.dumps(ids)))

    async def _publish(self, message: str) -> None:
        with contextlib.suppress(Exception):  # a wake-up only: streams also poll
            await self.redis.publish(self.names.commits_channel, message)

    def live_owners(self) -> set[str] | None:
        """Engines whose heartbeat was seen at the last beat; None when unknown."""
        return self._alive

    def owners_seen_at(self) -> float:
        return self._alive_at

    # ------------------------------------------------------------------ sending

    async def dispatch(self, tasks: list[TaskMessage]) -> None:
        local: list[TaskMessage] = []
        remote: list[TaskMessage] = []
        for task in tasks:
            bound = self._local is not None and engine_bound(task, self._handler_name)
            (local if bound else remote).append(task)
        if local:
            assert self._local is not None
            await self._local.dispatch(local)
        if not remote:
            return
        try:
            await self._send(remote)
        except Exception as exc:  # Redis is away: keep them, and send them when it is back
            from redis.exceptions import RedisError

            if not isinstance(exc, RedisError | OSError):
                raise
            logger.warning("dispatching %d attempt(s) failed (%s); retrying", len(remote), exc)
            track(self._acks, self._send_later(remote))

    async def _send_later(self, tasks: list[TaskMessage]) -> None:
        from redis.exceptions import RedisError

        delay = 0.2
        while not self._closing:
            await asyncio.sleep(delay)
            if self._router is not None:
                # Results that came meanwhile (the worker holding the attempt answered):
                # sending those attempts now would run completed nodes again.
                tasks = self._router.still_in_flight(tasks)
                if not tasks:
                    return
            try:
                await self._send(tasks)
                return
            except (RedisError, OSError) as exc:
                delay = min(5.0, delay * 2)
                logger.warning("dispatching %d attempt(s) failed again (%s)", len(tasks), exc)

    async def _send(self, remote: list[TaskMessage]) -> None:
        assert self._sender is not None, "dispatcher not started"
        await self._sender.send(remote, self.inbox)

    def _handler_name(self, handler: str) -> str:
        return handler_name(self._canonical, handler)

    async def cancel(
        self, execution_id: str, node_id: str, attempt: int, kind: str = TaskKind.RUN
    ) -> None:
        if self._local is not None:
            await self._local.cancel(execution_id, node_id, attempt, kind)
        # An attempt's cancel is three values (what every worker reads); a compensation's
        # (a forced cancel abandons it) names its kind, and has a flag of its own.
        said: list[Any] = [execution_id, node_id, attempt]
        if kind != TaskKind.RUN:
            said.append(str(kind))
        message = json.dumps(said)
        with contextlib.suppress(Exception):  # best effort: the machine already cancelled it
            async with self.redis.pipeline(transaction=False) as pipe:
                flag = self.names.cancelled(execution_id, node_id, attempt, kind)
                pipe.set(flag, "1", ex=3600)
                pipe.publish(self.names.cancel_channel, message)
                await pipe.execute()

    async def forward(self, owner: str | None, execution_id: str, event: Event) -> None:
        """Send an event to ``owner``'s inbox, or to the shared stream when None."""
        await forward_event(self.redis, self.names, self._sealer, owner, execution_id, event)

    # ------------------------------------------------------------------ receiving

    async def _consume(self) -> None:
        from redis.exceptions import RedisError, ResponseError

        streams: dict[Any, Any] = {self.inbox: ">", self.names.completions: ">"}
        while not self._closing:
            try:
                reply = cast(
                    StreamReply,
                    await self.redis.xreadgroup(
                        ORCHESTRATOR_GROUP, self._owner, streams, count=_READ_COUNT, block=1000
                    ),
                )
                for stream, entries in reply or []:
                    await self._handle(text(stream), entries)
            except ResponseError as exc:
                if stream_lost(exc):
                    await self._streams_lost()
                else:
                    logger.error("reading streams failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)
            except (RedisError, OSError) as exc:
                logger.warning("reading streams failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
            except Exception:
                # This loop is the orchestrator's only ear: it must outlive any one bad turn.
                logger.exception("handling stream entries failed; reading on")
                await asyncio.sleep(0.5)

    async def _handle(self, stream: str, entries: Entries) -> None:
        assert self._entries is not None, "bind_router first"
        await self._entries.handle(stream, entries)

    # ------------------------------------------------------------------ housekeeping

    async def _housekeeping(self) -> None:
        """Heartbeat, epoch check, and claiming entries left pending for too long."""
        from redis.exceptions import RedisError

        beats = 0
        while not self._closing:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            beats += 1
            try:
                await self._beat()
                epoch = await self.redis.get(self.names.epoch)
                if epoch is None or text(epoch) != self._epoch:
                    await self._recover_lost_data()
                    continue
                for stream in (self.inbox, self.names.completions):
                    await self._reclaim(stream)
                if beats % self._sweep_every == 0:
                    await self._sweep_starts()
                if beats % 5 == 0:
                    # Safety net: an in-flight attempt whose task was lost (its guard is gone)
                    # is sent again; for all others the guarded dispatch adds nothing.
                    assert self._router is not None
                    await self._router.redispatch_guarded()
            except (RedisError, OSError) as exc:
                self._alive = None
                logger.warning("redis housekeeping failed (%s); retrying", exc)

    async def _beat(self) -> None:
        redis = self.redis
        info = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "at": time.time()})
        ttl = max(1, int(self.settings.heartbeat_seconds * 3 + 0.999))
        await redis.set(self.names.orchestrator(self._owner), info, ex=ttl)
        prefix = self.names.orchestrator("")
        looked = time.time()
        alive = set()
        async for key in redis.scan_iter(match=self.names.orchestrator_pattern, count=1000):
            alive.add(text(key)[len(prefix) :])
        self._alive, self._alive_at = alive, looked

    async def _reclaim(self, stream: str) -> None:
        """Take over entries pending longer than they should (a reader died mid-turn)."""
        reply: list[Any] = await self.redis.xautoclaim(
            stream, ORCHESTRATOR_GROUP, self._owner, _RECLAIM_IDLE_MS, "0-0", count=_READ_COUNT
        )
        entries: Entries = [e for e in (reply[1] if reply else []) if e and e[1] is not None]
        if entries:
            logger.info("reclaimed %d pending entries of %s", len(entries), stream)
            await self._handle(stream, entries)

    async def _sweep_starts(self) -> None:
        """Hand over starts the API committed but could not add to the queue (Redis failed
        in between): a start is never left pending because its hand-over was lost."""
        assert self._router is not None
        try:
            count = await self._router.hand_over_again(_SWEEP_STARTS_AFTER)
        except OrchestrionError as exc:  # the store is down: the next sweep tries again
            logger.warning("sweeping pending starts failed (%s)", exc)
            return
        if count:
            logger.info("handed over %d pending start(s) found by the sweep", count)

    async def _hand_over_again(self) -> None:
        """At start and after Redis lost its data: starts handed over and lost with it are
        sent again (a start delivered twice is claimed once)."""
        assert self._router is not None
        try:
            count = await self._router.hand_over_again()
        except Exception:
            logger.exception("could not hand over pending executions again")
            return
        if count:
            logger.info("handed over %d pending execution(s) again", count)

    async def _drain(self, timeout: float = 5.0) -> None:
        """Read what waits on this engine's streams now and wait (``timeout`` at most) for
        the turns that apply it to be committed."""
        from redis.exceptions import RedisError

        streams: dict[Any, Any] = {self.inbox: ">", self.names.completions: ">"}
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                reply = cast(
                    StreamReply,
                    await self.redis.xreadgroup(
                        ORCHESTRATOR_GROUP, self._owner, streams, count=_READ_COUNT
                    ),
                )
                if not reply or not any(entries for _, entries in reply):
                    break
                for stream, entries in reply:
                    await self._handle(text(stream), entries)
        except (RedisError, OSError) as exc:
            logger.warning("reading results before dispatching again failed (%s)", exc)
        if self._acks:
            await asyncio.wait(list(self._acks), timeout=max(0.1, deadline - time.monotonic()))

    async def _streams_lost(self) -> None:
        """A read found its stream or group gone: all of Redis's data (a new epoch), or just
        this inbox, deleted by a reaper that took this orchestrator for dead."""
        from redis.exceptions import RedisError

        try:
            epoch = await self.redis.get(self.names.epoch)
            if epoch is None or text(epoch) != self._epoch:
                await self._recover_lost_data()
            else:
                await self._prepare()
        except (RedisError, OSError) as exc:
            logger.warning("making the stream groups again failed (%s); retrying", exc)
            await asyncio.sleep(0.5)

    async def _recover_lost_data(self) -> None:
        """Redis came back empty: groups again, a new epoch, and in-flight work again."""
        logger.warning("redis lost its data (restarted without persistence): re-dispatching")
        await self._prepare()  # the first orchestrator back sets the new epoch; others take it
        assert self._router is not None
        # Results that reached the new streams since the loss are applied first: their
        # attempts are not in flight any more, and must not be dispatched again.
        await self._drain()
        count = await self._router.redispatch()
        logger.warning("re-dispatched %d attempt(s) after redis lost its data", count)
        await self._hand_over_again()  # starts handed over and lost with the data
