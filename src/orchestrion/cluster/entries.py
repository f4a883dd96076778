"""What an orchestrator does with the entries it reads from its inbox and the shared stream.

Each entry's event goes to the engine through its ``EventRoute`` (this engine, the owner, a
takeover, or dropped as a late duplicate). An entry is acknowledged (XACK and XDEL in one
transaction) only once the engine's turn that applied it is committed, so a crash in between
redelivers it; the machine ignores what it has already applied. An entry the machine here
changed nothing with is acknowledged only once the store says this engine still drives the
execution (a duplicate) or the event went on to the engine that took it over meanwhile: a
machine that has not yet noticed it lost its execution must not swallow that owner's result.
An unreadable entry is dropped at once; one sealed with a key this process lacks, or routed
``RETRY_LATER`` (the store did not answer), stays pending and is claimed again later.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from orchestrion.cluster.replies import release_decision, reply_key_of, send_reply
from orchestrion.cluster.streams import ORCHESTRATOR_GROUP, Entries, StreamNames
from orchestrion.cluster.wire import WireError, decode_event, loads
from orchestrion.core.events import Event, WaitResolved
from orchestrion.dispatch.base import EventRoute, NotApplied, Routed
from orchestrion.errors import OrchestrionError

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.cluster.on_wire import WireSealer

__all__ = ["EntryHandler", "track"]

Pending = tuple[bytes, "asyncio.Future[None]", str, "Event"]
"""An entry handed to an engine: (entry id, its commit's future, execution id, event)."""

logger = logging.getLogger(__name__)


def track(jobs: set[asyncio.Task[None]], work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` as a task kept in ``jobs`` until it is done (a shutdown waits for them)."""
    job = asyncio.create_task(work)
    jobs.add(job)
    job.add_done_callback(jobs.discard)


class EntryHandler:
    """Routes read entries and acknowledges them once applied; see the module docstring.
    ``jobs`` holds the acknowledgements still waiting for a commit."""

    def __init__(
        self,
        redis: Callable[[], Redis],
        router: EventRoute,
        sealer: WireSealer | None,
        jobs: set[asyncio.Task[None]],
        names: StreamNames,
    ) -> None:
        self._names = names
        self._redis = redis
        self._router = router
        self._sealer = sealer
        self._jobs = jobs

    async def handle(self, stream: str, entries: Entries) -> None:
        router = self._router
        pending: list[Pending] = []
        done: list[bytes] = []
        sealer = self._sealer
        for entry_id, fields in entries:
            try:
                execution_id, event = decode_event(loads(fields.get(b"m", b"")))
            except WireError as exc:
                logger.error("dropping unreadable message %s on %s: %s", entry_id, stream, exc)
                done.append(entry_id)
                continue
            if sealer is not None:
                try:
                    event = sealer.open_event(execution_id, event)
                except OrchestrionError as exc:
                    # Sealed with a key this process lacks: left pending, claimed again
                    # until it has the key (dropping it would strand the attempt).
                    logger.error("cannot open message %s on %s: %s", entry_id, stream, exc)
                    continue
            fast = router.deliver_if_live(execution_id, event)
            if fast is not None:
                pending.append((entry_id, fast, execution_id, event))
                continue
            routed, future = await router.route(execution_id, event)
            if future is not None:
                pending.append((entry_id, future, execution_id, event))
            elif routed is not Routed.RETRY_LATER:
                done.append(entry_id)
                if routed is Routed.DROPPED:
                    await self._router.refused(execution_id, event)
                    await self._reply(execution_id, event, applied=False)
        if done:
            await self._ack(stream, done)
        if pending:
            track(self._jobs, self._ack_when_committed(stream, pending))

    async def _ack_when_committed(self, stream: str, pending: list[Pending]) -> None:
        results = await asyncio.gather(*(p[1] for p in pending), return_exceptions=True)
        ids = []
        for (entry, _, execution_id, event), result in zip(pending, results, strict=True):
            if result is None:
                ids.append(entry)
                await self._reply(execution_id, event, applied=True)
            elif isinstance(result, NotApplied):
                settled = await self._router.settle_unapplied(execution_id, event)
                if settled is not Routed.RETRY_LATER:
                    ids.append(entry)
                if settled is Routed.DROPPED:  # forwarded: the new owner answers
                    await self._router.refused(execution_id, event)
                    await self._reply(execution_id, event, applied=False)
        if ids:
            await self._ack(stream, ids)

    async def _reply(self, execution_id: str, event: Event, *, applied: bool) -> None:
        """Tell a requester waiting on the event (a retry or a decision from the API) how it
        ended; a decision lets its node's wait go (``replies.hold_decision``)."""
        key = reply_key_of(event)
        if key is None:
            return
        if isinstance(event, WaitResolved):  # let go first: a 409 may be asked again at once
            hold = self._names.decision(execution_id, event.node, event.attempt)
            await release_decision(self._redis(), hold, key)
        await send_reply(self._redis(), key, applied)

    async def _ack(self, stream: str, ids: list[bytes]) -> None:
        from redis.exceptions import RedisError

        try:
            async with self._redis().pipeline(transaction=True) as pipe:
                pipe.xack(stream, ORCHESTRATOR_GROUP, *ids)
                pipe.xdel(stream, *ids)
                await pipe.execute()
        except (RedisError, OSError) as exc:  # redelivered later; applying twice is harmless
            logger.warning("acknowledging %d entries failed: %s", len(ids), exc)
