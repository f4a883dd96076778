"""A scale-out worker: reads task streams, runs attempts with the executor, answers.

A worker serves the handlers it is given (all registered ones by default, except those that
need the engine) and the capabilities it declares: it reads ``tasks:{handler}`` and
``tasks:{handler}+{caps}`` for every subset of its capabilities, in the consumer group
``workers``, at most ``concurrency`` attempts at once. For each attempt it:

1. skips it when the guard of the attempt (or compensation) says it is done already (a
   redelivery) or it was cancelled;
2. sends ``NodeStarted`` to the reply stream (the dispatching orchestrator's inbox), after
   ``START_HELD`` s (``cluster/attempts.py``): an attempt that ends sooner sends it in
   step 4, before its outcome;
3. runs it with ``NodeExecutor`` (templates, config schema, timeout, classification) behind the
   circuit breaker of its handler and target host, or through the handler's ``run_now`` when
   it has one and nothing to wait for (no timeout, no breaker: such handlers reach nothing);
   a task of a classified execution is opened with the key ring first, and a classified
   node's outcome sealed (``governance/on_wire``); without the key the attempt fails with
   category ``configuration`` and nothing runs;
4. in ONE Redis transaction: adds the outcome to the reply stream, marks the guard done, and
   acknowledges and deletes the task entry. A crash before that leaves the entry pending for
   the reaper; a crash after it loses nothing. An entry the worker could not finish while
   Redis was away stays pending with it and is taken up again after
   ``leases.OWN_RECLAIM_IDLE`` s.

A heartbeat key (handlers, capabilities, load) tells the reaper and ``/health`` it is alive,
and the worker renews its hold on the entries it runs (``cluster/leases.py``), so the reaper
never takes an attempt from a live worker however long it runs.
On ``stop`` it reads no more, lets running attempts finish for the grace period, and leaves
the rest pending, to be reclaimed at once since its heartbeat is gone.
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
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from orchestrion.cluster import leases
from orchestrion.cluster.attempts import Outcome, run_attempt, unreadable_outcome
from orchestrion.cluster.batching import Batch, Reads
from orchestrion.cluster.channels import listen_channel
from orchestrion.cluster.connection import connect_redis, ensure_group, queue_errors, stream_lost
from orchestrion.cluster.on_wire import open_task
from orchestrion.cluster.progress import ProgressWriter
from orchestrion.cluster.streams import (
    WORKER_GROUP,
    StreamNames,
    StreamReply,
    capability_sets,
    text,
)
from orchestrion.cluster.wire import WireError, decode_task, encode_event, loads
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import ErrorCategory, OrchestrionError
from orchestrion.execution import enforce
from orchestrion.execution.executor import NodeExecutor
from orchestrion.execution.log_capture import log_limits
from orchestrion.governance.runtime import Governance
from orchestrion.handlers import function_threads
from orchestrion.handlers.base import Resources
from orchestrion.handlers.registry import HandlerRegistry

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

    from orchestrion.cluster.circuits import CircuitBreakers
    from orchestrion.settings import Settings

__all__ = ["ENGINE_BOUND_HANDLERS", "Worker"]

logger = logging.getLogger(__name__)

ENGINE_BOUND_HANDLERS = frozenset({"workflow"})
"""Handlers that run in the orchestrator's process: they start child executions."""


class Worker:
    """Runs attempts from Redis task streams; see the module docstring. ``start`` raises a
    Redis that cannot be reached as ``DispatchError``."""

    def __init__(
        self,
        url: str,
        settings: Settings,
        registry: HandlerRegistry,
        *,
        handlers: list[str] | None = None,
        capabilities: list[str] | None = None,
        concurrency: int = 16,
        secrets: Mapping[str, str] | None = None,
        worker_id: str | None = None,
        breakers: CircuitBreakers | None = None,
        governance: Governance | None = None,
    ) -> None:
        self.url = url
        # The policy this worker enforces on every attempt (SSRF guard, LLM policy, python
        # allowlist, template limits); `orchestrion worker` passes an untrusted one.
        self.governance = governance or Governance.from_settings(settings)
        self.settings = settings
        # The orchestrators' key ring opens classified tasks and seals their outcomes.
        self.keyring = self.governance.keyring
        self.registry = registry
        self.names = StreamNames(settings.redis_prefix)
        served = handlers or [s.name for s in registry.specs()]
        self.handlers = sorted({registry.canonical_name(h) for h in served} - ENGINE_BOUND_HANDLERS)
        self.capabilities = sorted(set(capabilities or []))
        self.concurrency = concurrency
        self.id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.streams = [
            self.names.tasks(h, caps)
            for h in self.handlers
            for caps in capability_sets(self.capabilities)
        ]
        self._secrets = dict(secrets or {})
        self._breakers = breakers
        self._redis: Redis | None = None
        self._executor: NodeExecutor | None = None
        self._resources = Resources(enforce.controls_of(self.governance), registry=self.registry)
        # A map's item counts, for the API that drives nothing (cluster/progress.py).
        self._progress = ProgressWriter(lambda: self.redis, self.names)
        self._resources.progress = self._progress.report
        # Commands of attempts that start or end in the same loop tick share one round trip;
        # the outcomes' batch is one transaction (each attempt's part of it stays atomic).
        self._started = Batch(lambda: self.redis, transaction=False)
        self._finished = Batch(lambda: self.redis, transaction=True)
        self._guards = Reads(lambda: self.redis)
        self._busy = 0
        self._slot_freed = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()
        # By execution, node, attempt and task kind: a cancel stops a node's attempt, never
        # the compensation of the same node and attempt number.
        self._running: dict[tuple[str, str, int, str], asyncio.Task[None]] = {}
        self._entries: set[tuple[str, bytes]] = set()  # (stream, entry id) being handled
        self._stopping = asyncio.Event()
        self._loops: list[asyncio.Task[None]] = []
        self.completed = 0  # attempts answered by this worker (for tests and the heartbeat)

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("worker not started")
        return self._redis

    async def start(self) -> None:
        from orchestrion.handlers.http import build_http_client

        self._redis = connect_redis(self.url)
        try:
            with queue_errors():
                for stream in self.streams:
                    await ensure_group(self._redis, stream, WORKER_GROUP)
        except BaseException:
            await self._redis.aclose()  # not reachable yet: the caller may start again
            self._redis = None
            raise
        self._resources.http_factory = lambda: build_http_client(
            timeout=self.settings.http_timeout,
            max_connections=self.settings.http_max_connections,
            # Connections go only to addresses the policy in force checked (DNS rebinding);
            # read per connection, so a later ``use_governance`` is followed too.
            url_policy=lambda: self.governance.url_policy,
        )
        function_threads.configure(self.settings.python_threads)
        self._executor = NodeExecutor(
            self.registry,
            self._resources,
            self._secrets,
            circuits=self._breakers,
            logs=log_limits(self.settings, self.governance.masker),
            error_chars=self.settings.node_error_max_chars,
        )
        self._stopping.clear()
        with queue_errors():
            await self._beat()
        self._loops = [
            asyncio.create_task(self._read(), name="orchestrion-worker-read"),
            asyncio.create_task(self._heartbeat(), name="orchestrion-worker-heartbeat"),
            asyncio.create_task(self._listen_cancels(), name="orchestrion-worker-cancels"),
            asyncio.create_task(self._reclaim_own(), name="orchestrion-worker-reclaim"),
            asyncio.create_task(self._keep_leases(), name="orchestrion-worker-leases"),
        ]
        logger.info(
            "worker %s serving %s (capabilities: %s), concurrency %d",
            self.id,
            ", ".join(self.handlers),
            ", ".join(self.capabilities) or "none",
            self.concurrency,
        )

    async def stop(self, grace: float | None = None) -> None:
        """Stop reading; let running attempts finish for ``grace`` s; leave the rest pending."""
        grace = self.settings.shutdown_grace if grace is None else grace
        logger.info(
            "worker %s stopping: %d attempt(s) running, grace %gs", self.id, len(self._jobs), grace
        )
        self._stopping.set()
        reader = self._loops[0] if self._loops else None
        if reader is not None:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)
        jobs = list(self._jobs)
        if jobs and grace > 0:
            await asyncio.wait(jobs, timeout=grace)
        for job in list(self._jobs):
            job.cancel()
        await asyncio.gather(*self._jobs, return_exceptions=True)
        for loop in self._loops[1:]:
            loop.cancel()
        # Bounded: a loop whose cancellation a library swallowed still sees ``_stopping``.
        _, stuck = await asyncio.wait(self._loops, timeout=5.0)
        if stuck:
            logger.warning("worker %s: %d loop(s) did not stop in time", self.id, len(stuck))
        self._loops = []
        if self._redis is not None:
            # Every command of the attempts goes out before the client closes: one still in
            # flight would open a connection again that nothing closes.
            for batch in (self._started, self._finished, self._guards):
                await batch.drain()
            await self._progress.close()
            with contextlib.suppress(Exception):  # gone at once: the reaper need not wait
                await self._redis.delete(self.names.worker(self.id))
            await self._redis.aclose()
            self._redis = None
        await self._resources.aclose()
        logger.info("worker %s stopped", self.id)

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (SIGTERM in the CLI), then stop gracefully."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # ------------------------------------------------------------------ reading

    async def _read(self) -> None:
        from redis.exceptions import RedisError, ResponseError

        while not self._stopping.is_set():
            free = self.concurrency - self._busy
            if free <= 0:  # read only what can start now; the rest stays for other workers
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            try:
                reply = cast(
                    StreamReply,
                    await self.redis.xreadgroup(
                        WORKER_GROUP,
                        self.id,
                        dict.fromkeys(self.streams, ">"),
                        count=free,
                        block=1000,
                    ),
                )
            except ResponseError as exc:
                if stream_lost(exc):
                    await self._groups_again()
                else:
                    logger.error("reading task streams failed (%s); retrying", exc)
                    await asyncio.sleep(0.5)
                continue
            except (RedisError, OSError) as exc:
                logger.warning("reading task streams failed (%s); retrying", exc)
                await asyncio.sleep(0.5)
                continue
            for stream_key, items in reply or []:
                for entry_id, fields in items:
                    self._spawn(text(stream_key), entry_id, fields)

    def _spawn(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        self._busy += 1
        self._entries.add((stream, entry_id))
        job = asyncio.create_task(self._handle(stream, entry_id, fields))
        self._jobs.add(job)
        job.add_done_callback(lambda done: self._job_done(done, (stream, entry_id)))

    async def _reclaim_own(self) -> None:
        """Entries this worker read but could not finish (Redis went away at the wrong moment:
        the guard check or the outcome failed) are taken up again after a while, instead of
        waiting for the reaper's much longer idle timeout (``cluster/leases.py``)."""
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(leases.OWN_RECLAIM_IDLE)
            try:
                for stream, entry_id, fields in await leases.stranded(
                    self.redis, self.streams, self.id, self._entries
                ):
                    self._spawn(stream, entry_id, fields)
            except (RedisError, OSError) as exc:
                logger.warning("looking for stranded tasks failed: %s", exc)

    async def _keep_leases(self) -> None:
        """Renew the hold on the entries being run, so the reaper leaves them to this live
        worker however long their attempts take (``cluster/leases.py``)."""
        from redis.exceptions import RedisError

        every = leases.renew_every(self.settings)
        while True:
            await asyncio.sleep(every)
            if not self._entries:
                continue
            try:
                await leases.renew(self.redis, self.id, list(self._entries))
            except (RedisError, OSError) as exc:
                logger.warning("renewing the hold on running tasks failed: %s", exc)

    async def _groups_again(self) -> None:
        """A stream or its group is gone (Redis lost its data): make them again, from the
        start of each stream, so nothing added meanwhile is skipped."""
        from redis.exceptions import RedisError

        try:
            for stream in self.streams:
                await ensure_group(self.redis, stream, WORKER_GROUP)
        except (RedisError, OSError) as exc:
            logger.warning("making the task stream groups again failed (%s); retrying", exc)
            await asyncio.sleep(0.5)

    def _job_done(self, job: asyncio.Task[None], entry: tuple[str, bytes]) -> None:
        self._jobs.discard(job)
        self._entries.discard(entry)
        self._busy -= 1
        self._slot_freed.set()
        if not job.cancelled() and job.exception() is not None:
            logger.error("worker job failed", exc_info=job.exception())

    async def _handle(self, stream: str, entry_id: bytes, fields: dict[bytes, bytes]) -> None:
        try:
            data = loads(fields.get(b"m", b""))
            task = decode_task(data)
        except WireError as exc:
            await self._parkunreadable_outcome(stream, entry_id, fields, exc)
            return
        reply_to = data.get("reply_to") or self.names.completions
        guard = self.names.guard_for(task)
        done, cancelled = await self._checks(
            guard,
            self.names.cancelled(task.execution_id, task.node_id, task.attempt, task.kind),
        )
        # Each kind has its cancel flag and its guard: a compensation shares its node and
        # attempt number (the execution timeout cancels an attempt, then compensates), and
        # must still run then; a forced cancel abandons the compensation itself.
        if cancelled is not None or done == b"d":
            await self._finish(stream, entry_id, reply_to, None, guard)
            return
        try:
            task = open_task(self.keyring, task)
        except OrchestrionError as exc:
            await self._finish(stream, entry_id, reply_to, unreadable_outcome(task, exc), guard)
            return
        key = (task.execution_id, task.node_id, task.attempt, str(task.kind))
        job = asyncio.current_task()
        assert job is not None
        self._running[key] = job
        try:
            outcome = await self._execute(task, reply_to)
        except asyncio.CancelledError:
            if self._stopping.is_set():
                raise  # shutting down: left pending, reclaimed by the reaper
            outcome = None  # cancelled by the orchestrator: nothing to report
        finally:
            self._running.pop(key, None)
        await self._finish(stream, entry_id, reply_to, outcome, guard)

    async def _checks(self, guard: str, cancelled: str) -> list[bytes | None]:
        """The guard and the cancel flag; retried while Redis is away (a restart). The tasks
        of one read check theirs together, in one MGET."""
        from redis.exceptions import RedisError

        for delay in (0.2, 0.5, 1.0, 2.0):
            try:
                return await self._guards.get(guard, cancelled)
            except (RedisError, OSError) as exc:
                logger.warning("checking a task's guard failed (%s); retrying", exc)
                await asyncio.sleep(delay)
        # Still away: the entry stays pending with this worker and is taken up again later.
        return await self._guards.get(guard, cancelled)

    async def _execute(self, task: TaskMessage, reply_to: str) -> Outcome | None:
        assert self._executor is not None
        return await run_attempt(self._executor, self._started, self.keyring, task, reply_to)

    async def _finish(
        self,
        stream: str,
        entry_id: bytes,
        reply_to: str,
        outcome: Outcome | None,
        guard: str,
    ) -> None:
        """Outcome, guard and acknowledgement in one transaction (see the module docstring);
        the start of an attempt that ended before its start was sent goes first."""
        from redis.exceptions import RedisError

        message: dict[Any, Any] | None = (
            {"m": encode_event(outcome.execution_id, outcome.event)}
            if outcome is not None
            else None
        )

        def commands(pipe: Pipeline) -> None:
            if message is not None:
                assert outcome is not None
                for start in outcome.started:
                    pipe.xadd(reply_to, start)
                pipe.xadd(reply_to, message)
                pipe.set(guard, "d", xx=True, keepttl=True)

        for delay in (0.2, 0.5, 1.0, 2.0, 5.0):
            try:
                await self._finished.add(commands, ack=(stream, entry_id))
                if outcome is not None:
                    self.completed += 1
                return
            except (RedisError, OSError) as exc:
                logger.warning("sending an outcome failed (%s); retrying", exc)
                await asyncio.sleep(delay)
        logger.error("gave up sending the outcome of %s; it runs again later", entry_id)

    async def _parkunreadable_outcome(
        self, stream: str, entry_id: bytes, fields: dict[bytes, bytes], exc: WireError
    ) -> None:
        from orchestrion.cluster.dlq import DeadLetters

        logger.error("parking unreadable task %s of %s: %s", entry_id, stream, exc)
        raw = fields.get(b"m", b"").decode(errors="replace")
        await DeadLetters(self.redis, self.names).park_raw(
            stream, entry_id, raw, category=ErrorCategory.SCHEMA, message=str(exc), consumer=self.id
        )

    # ------------------------------------------------------------------ presence

    async def _heartbeat(self) -> None:
        from redis.exceptions import RedisError

        while True:
            await asyncio.sleep(self.settings.heartbeat_seconds)
            try:
                await self._beat()
            except (RedisError, OSError) as exc:
                logger.warning("worker heartbeat failed: %s", exc)

    async def _beat(self) -> None:
        info = {
            "id": self.id,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "handlers": self.handlers,
            "capabilities": self.capabilities,
            "concurrency": self.concurrency,
            "in_flight": len(self._running),
            "completed": self.completed,
            "at": time.time(),
        }
        ttl = max(1, int(self.settings.heartbeat_seconds * 3 + 0.999))
        await self.redis.set(self.names.worker(self.id), json.dumps(info), ex=ttl)

    async def _listen_cancels(self) -> None:
        """Cancel a running attempt, or compensation, when its orchestrator says so (best
        effort: a ``def`` running in a thread cannot be interrupted and runs to its end)."""

        def cancel(data: Any) -> None:
            # [execution, node, attempt] stops an attempt; a fourth value names another kind
            # (``compensate``: a compensation a forced cancel abandoned).
            try:
                execution_id, node_id, attempt, *kind = json.loads(data)
                key = (execution_id, node_id, int(attempt), str(kind[0] if kind else "run"))
                job = self._running.get(key)
            except (ValueError, TypeError):
                return
            if job is not None:
                job.cancel()

        await listen_channel(self.redis, self.names.cancel_channel, cancel, self._stopping.is_set)
