"""Recovery: loading executions from the store and carrying them on where they stopped.

At start and on every heartbeat the engine resumes the unfinished executions nobody alive
drives; an execution dropped by a failed commit is reloaded; one taken over by another
engine is dropped. A loaded machine is installed once (``EngineLoop.install``) and recovered
by the path that installed it: what was in flight is dispatched again, timers are armed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

from orchestrion.core.events import Started, TimerFired, TimerKind
from orchestrion.core.machine import NodeRun
from orchestrion.core.node_run import PHASE_COMPENSATE
from orchestrion.core.reasons import WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.engine.live import Action, LiveExecution
from orchestrion.engine.timers import arm_deadline, disarm
from orchestrion.errors import ExecutionError, OrchestrionError, StoreError
from orchestrion.store.base import CommitBatch, ExecutionRecord

if TYPE_CHECKING:
    from orchestrion.core.events import Record
    from orchestrion.engine.parts import EngineParts
    from orchestrion.store.base import Store

__all__ = ["Recovery"]

logger = logging.getLogger(__name__)


async def compensations_begun(store: Store, execution_id: str) -> int:
    """How many compensations the execution began (its ``execution.compensating`` events):
    the round of the one under way, which names its tasks (``RunCompensation.round``)."""
    count, after = 0, 0
    kinds = [RecordType.EXECUTION_COMPENSATING.value]
    while True:
        page = await store.list_events(execution_id, after_seq=after, limit=1000, types=kinds)
        count += len(page)
        if len(page) < 1000:
            return count
        after = page[-1].seq


class Recovery:
    """Loads, resumes, reloads and takes over executions for one engine.

    ``resume``: take over unfinished executions nobody alive drives (at start and on each
    heartbeat); off for an engine that must not drive what it did not start.
    """

    def __init__(self, parts: EngineParts, *, resume: bool) -> None:
        self._parts = parts
        self.resume = resume
        self._background: set[asyncio.Future[None]] = set()
        self.heartbeat_task: asyncio.Task[None] | None = None
        parts.loop.on_commit_failed = self.schedule_reload

    async def load(self, execution_id: str) -> LiveExecution:
        """Rebuild an execution's machine and output cache from the store as it stands now.

        Called once this engine holds the claim: the record is read here, never taken from
        before the claim, when its old owner may still have committed (a start read as
        pending would be begun again, its first node run under a new attempt)."""
        store = self._parts.engine.store
        record = await store.get_execution(execution_id)
        compiled = await self._parts.definitions.compiled_for(record.definition_id)
        runs = await store.get_node_runs(record.id)
        outputs = await store.get_outputs(record.id)
        live = self._parts.loop.make_live(record, compiled, outputs)
        nodes = {
            run.node_id: NodeRun(
                state=run.state,
                attempt=run.attempt,
                started_at=run.started_at,
                finished_at=run.finished_at,
                error=run.error,
                wait_reason=run.wait_reason,
                wake_at=run.wake_at,
                compensation=run.compensation,
            )
            for run in runs
        }
        rounds = 0
        if record.phase == PHASE_COMPENSATE and record.status not in FINAL_EXECUTION_STATES:
            rounds = await compensations_begun(store, record.id)
        live.machine.restore(record.status, record.phase, nodes, record.error, rounds)
        return live

    async def adopt(self, record: ExecutionRecord) -> bool:
        """See ``Engine.adopt``."""
        if record.id in self._parts.loop.live:
            return True
        if not await self._parts.ownership.claim(record.id, record.owner):
            return False
        live = await self.load(record.id)
        if self._parts.loop.install(live) is not live:
            return True  # loaded meanwhile by another path: that machine drives it
        await self.recover([live])
        return True

    # ------------------------------------------------------------------ leases

    def start(self) -> None:
        """Start renewing leases (and taking over what nobody alive drives)."""
        self.heartbeat_task = asyncio.create_task(self.heartbeat(), name="orchestrion-leases")

    async def stop(self) -> None:
        if self.heartbeat_task is not None:
            self.heartbeat_task.cancel()
            await asyncio.gather(self.heartbeat_task, return_exceptions=True)
            self.heartbeat_task = None

    async def heartbeat(self) -> None:
        """Renew the leases of live executions; take over executions whose owner died."""
        engine, loop = self._parts.engine, self._parts.loop
        interval = max(0.1, engine.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                ids = [eid for eid, live in loop.live.items() if not live.machine.finished]
                if ids:
                    until = time.time() + engine.settings.lease_seconds
                    for lost in await engine.store.renew_leases(engine.owner, ids, until):
                        self._drop_lost(lost)
                if self.resume and engine.accepting:
                    await self.resume_unfinished()
                    # Followers owed by an engine that stopped or died (older than a lease:
                    # a live engine's own are under way there).
                    await engine.followers.follow_owed(engine.settings.lease_seconds)
            except OrchestrionError:
                logger.exception("lease renewal failed; retrying")

    def _drop_lost(self, execution_id: str) -> None:
        live = self._parts.loop.live.pop(execution_id, None)
        if live is None or live.machine.finished:
            return
        logger.warning("execution %s was taken over by another process", execution_id)
        disarm(live)
        if not live.done.done():
            live.done.set_exception(
                ExecutionError(f"execution {execution_id} was taken over by another process")
            )
            live.done.exception()  # seen: with nobody waiting here it is not an error

    async def resume_unfinished(self) -> None:
        """Claim, load and recover the unfinished executions nobody alive drives."""
        lives = []
        now = time.time()
        ownership = self._parts.ownership
        for record in await self._parts.engine.store.unfinished_executions():
            if record.id in self._parts.loop.live:
                continue
            mine = record.owner == ownership.owner  # ours but dropped (a commit failed): reload
            if mine and record.status is ExecutionStatus.PENDING:
                continue  # a start in this process is beginning it at this moment
            if ownership.held_elsewhere(record, now):
                continue  # another live engine drives it
            if not await ownership.claim(record.id, record.owner, now):
                continue
            try:
                live = await self.load(record.id)
            except OrchestrionError:
                logger.exception("cannot resume execution %s", record.id)
                continue
            if live.machine.finished:  # it ended between the listing and the claim
                await self._parts.engine.store.release_executions(ownership.owner, [record.id])
                continue
            if self._parts.loop.install(live) is live:
                lives.append(live)
        if lives:
            logger.info("resuming %d unfinished execution(s)", len(lives))
            await self.recover(lives)
            post = self._parts.loop.post
            for live in lives:
                if live.machine.status is ExecutionStatus.PENDING and (
                    self._parts.loop.live.get(live.record.id) is live
                ):
                    # Created owned by a start that a crash cut off before its Started was
                    # committed: the start is what is left to do.
                    at = time.time()
                    post(live.record.id, Started(at))
                    arm_deadline(live, at, post)

    # ------------------------------------------------------------------ recovering

    async def recover(self, lives: list[LiveExecution]) -> None:
        """Commit what the machines' recovery makes and act on it: in-flight attempts are
        dispatched again, timers and deadlines armed again."""
        engine, loop = self._parts.engine, self._parts.loop
        batch = CommitBatch(owner=engine.owner, audit=engine.audit.signer, outbox=engine.outbox)
        actions: list[Action] = []
        touched: dict[str, list[Record]] = {}
        now = time.time()
        for live in lives:
            step = live.machine.recover(now)
            loop.absorb(live, step, batch, actions, None, touched)
        if batch:
            try:
                await engine.store.commit(batch)
            except StoreError:
                for live in lives:  # nothing of the batch was written: forget the machines
                    if loop.live.get(live.record.id) is live:
                        disarm(live)
                        del loop.live[live.record.id]
                if len(lives) == 1:
                    raise
                # Typically one execution was taken over while the others loaded (its lease
                # ran out first): one by one, the others are recovered all the same.
                for live in lives:
                    with contextlib.suppress(OrchestrionError):
                        await self._recover_alone(live.record.id)
                return
        loop.notify(touched)
        for live in lives:
            if live.record.started_at is not None:
                arm_deadline(live, live.record.started_at, loop.post)
        await loop.act(actions)
        for live in lives:
            if live.compiled.plan.routing or live.compiled.plan.on_error:
                # Notices journalled before the stop that no sink confirmed: sent again.
                await engine.notices.resend(engine.store, live.record)
        for live in lives:
            # A parent waiting on a child re-runs its node: it finds the child (same key) and
            # either takes its result or waits again, so no finish is lost across a restart.
            for i, run in enumerate(live.machine.nodes):
                if run.state is NodeState.WAITING and run.wait_reason == WaitReason.CHILD:
                    node_id = live.compiled.plan.ids[i]
                    loop.post(live.record.id, TimerFired(node_id, run.attempt, now, TimerKind.WAKE))

    async def _recover_alone(self, execution_id: str) -> None:
        record = await self._parts.engine.store.get_execution(execution_id)
        if record.owner != self._parts.ownership.owner or record.status in FINAL_EXECUTION_STATES:
            return  # another engine drives it now
        live = await self.load(execution_id)
        if self._parts.loop.install(live) is live:
            await self.recover([live])

    # ------------------------------------------------------------------ after a failed commit

    def schedule_reload(self, execution_id: str, attempt: int = 1) -> None:
        """Reload ``execution_id`` from the store in the background."""
        task = asyncio.ensure_future(self.reload(execution_id, attempt))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def reload(self, execution_id: str, attempt: int = 1) -> None:
        """Load again an execution a failed commit dropped, while this engine owns it."""
        loop = self._parts.loop
        try:
            record = await self._parts.engine.store.get_execution(execution_id)
            if record.status in FINAL_EXECUTION_STATES or execution_id in loop.live:
                return
            ownership = self._parts.ownership
            if record.owner not in (None, ownership.owner):
                return  # taken over meanwhile
            if record.owner is None and not await ownership.claim(execution_id, None):
                return  # given back meanwhile, and another engine claimed it first
            live = await self.load(execution_id)
            if loop.install(live) is live:
                await self.recover([live])
        except OrchestrionError as exc:
            # The store is still down: try again, less and less often, while we hold it.
            loop.live.pop(execution_id, None)
            delay = min(30.0, 2.0**attempt)
            logger.warning(
                "could not reload execution %s (%s); again in %gs", execution_id, exc, delay
            )
            if self._parts.engine.accepting:
                asyncio.get_running_loop().call_later(
                    delay, self.schedule_reload, execution_id, attempt + 1
                )
