"""The engine loop: one asyncio task that applies posted events and commits once per turn.

Everything that can change an execution (a trigger, a worker's result, a timer, a cancel) is
posted to the inbox. Each turn takes everything posted so far, applies it to the machines,
runs inline the attempts that need nothing outside the engine, commits all resulting records
in ONE store transaction (group commit), and only then acts on the commands: dispatches
attempts, arms timers, cancels attempts, resolves waiters. A crash at any point leaves the
store at a committed turn, from which recovery resumes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import (
    CancelNode,
    Dispatch,
    Event,
    ExecutionFinished,
    JudgeCriteria,
    NodeLogged,
    Notify,
    Record,
    RunCompensation,
    ScheduleTimer,
    Started,
    TimerKind,
)
from orchestrion.core.machine import ExecutionMachine, Step
from orchestrion.core.reasons import WaitReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus
from orchestrion.core.task_kinds import TaskKind
from orchestrion.dispatch.base import NotApplied
from orchestrion.engine.commit_faults import CommitFaults
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.engine.following import ENDING_OF
from orchestrion.engine.ids import new_event_id
from orchestrion.engine.judging import CriteriaJudge
from orchestrion.engine.live import Action, LiveExecution, Posted
from orchestrion.engine.recent_ends import RecentEnds
from orchestrion.engine.timers import arm_timer, disarm
from orchestrion.errors import ExecutionError, OrchestrionError, StoreError, UnstorableValue
from orchestrion.execution.enforce import template_limits_of
from orchestrion.store.base import CommitBatch, ExecutionRecord

if TYPE_CHECKING:
    import random

    from orchestrion.dispatch.base import Dispatcher, TaskMessage
    from orchestrion.engine.children import ChildExecutions
    from orchestrion.engine.facade import Engine

__all__ = ["EngineLoop", "RecordListener"]

logger = logging.getLogger(__name__)

# Bound once: a member read through its class costs more than a global, per record.
_NODE_QUEUED = RecordType.NODE_QUEUED
_NODE_WAITING = RecordType.NODE_WAITING
_EXECUTION_STARTED = RecordType.EXECUTION_STARTED
_CHILD = WaitReason.CHILD

# Longest run of back-to-back turns (seconds) before the loop lets other tasks in.
_TURNS_BUDGET = 0.005
# Longest a turn spends running attempts inline (seconds) before it commits what it has.
_INLINE_BUDGET = 0.005

RecordListener = Callable[[str, list[Record]], None]
"""Called after each commit with (execution_id, records just made durable)."""


def compensations_abandoned(actions: list[Action]) -> dict[tuple[str, str], int]:
    """(execution, node) of each compensation a turn stops (a forced cancel), with the
    position of its last stop: a ``RunCompensation`` before it in the same turn is never
    sent, or it would run with nothing left to stop it."""
    found: dict[tuple[str, str], int] = {}
    for n, (live, command, _cause) in enumerate(actions):
        if isinstance(command, CancelNode) and command.compensation:
            found[(live.record.id, command.node)] = n
    return found


class EngineLoop:
    """The live executions of one engine and the task that drives them (module docstring).

    ``dispatcher`` is set when the engine starts; ``on_commit_failed`` is told which
    executions a failed commit dropped, so they are reloaded from the store.
    """

    def __init__(
        self,
        engine: Engine,
        children: ChildExecutions,
        listeners: list[RecordListener],
        rng: random.Random,
    ) -> None:
        self._engine = engine
        self._children = children
        self._listeners = listeners
        self._rng = rng
        self.dispatcher: Dispatcher | None = None
        self.on_commit_failed: Callable[[str], None] = lambda execution_id: None
        # Whether an end of (event, workflow) may owe followers (engine/following.py).
        self.follows_owed: Callable[[str, str], bool] = lambda ending, workflow: False
        self.live: dict[str, LiveExecution] = {}
        self.inbox: list[Posted] = []
        self.progress: dict[str, dict[str, dict[str, int]]] = {}  # live, not durable
        self.ends = RecentEnds()  # for ``Outcomes``: results read back without waits
        self._wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.faults = CommitFaults()
        self._judge = CriteriaJudge(lambda: template_limits_of(engine.governance), self.post)

    # ------------------------------------------------------------------ posting

    def post(self, execution_id: str, event: Event) -> None:
        """Event sink for workers and timers (cause: the attempt's dispatch record)."""
        live = self.live.get(execution_id)
        cause = None
        node = getattr(event, "node", None)
        if live is not None and node is not None:
            cause = live.queued_event.get(node)
        self.inbox.append(Posted(execution_id, event, cause))
        self._wake.set()

    async def post_and_wait(self, execution_id: str, event: Event) -> None:
        """Post ``event`` and return once the turn that applied it is committed."""
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox.append(Posted(execution_id, event, None, ack))
        self._wake.set()
        await ack

    def deliver(self, execution_id: str, event: Event) -> asyncio.Future[None]:
        """See ``Engine.deliver``."""
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        live = self.live.get(execution_id)
        node = getattr(event, "node", None)
        cause = live.queued_event.get(node) if live is not None and node is not None else None
        self.inbox.append(Posted(execution_id, event, cause, ack, redeliverable=True))
        self._wake.set()
        return ack

    async def drain(self, within: float | None = None) -> None:
        """Wait until everything posted so far, and the turn under way, is committed (for
        ``within`` s at most: see ``stop``)."""
        if self.task is None or self.task.done():
            return
        deadline = None if within is None else time.monotonic() + within
        while deadline is None or time.monotonic() < deadline:
            ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self.inbox.append(Posted("", Started(0.0), None, ack))  # a no-op marker
            self._wake.set()
            await ack
            if not self.inbox:
                return

    def report_progress(self, execution_id: str, node_id: str, counts: dict[str, int]) -> None:
        """Keep the item counts a running ``map`` node reports (see ``Engine.node_progress``)."""
        if execution_id in self.live:
            self.progress.setdefault(execution_id, {})[node_id] = counts

    def make_live(
        self, record: ExecutionRecord, compiled: CompiledWorkflow, outputs: dict[str, Any]
    ) -> LiveExecution:
        """A machine for ``record`` in its stored status (not yet driven: see ``install``)."""
        machine = ExecutionMachine(compiled.plan, record.id, rng=self._rng, status=record.status)
        done: asyncio.Future[ExecutionStatus] = asyncio.get_running_loop().create_future()
        return LiveExecution(record, compiled, machine, outputs, done)

    def install(self, live: LiveExecution) -> LiveExecution:
        """Make ``live`` its execution's machine, unless another path installed one while it
        loaded (a reload after a failed commit, the heartbeat's resume, a routed event, an
        operator's request): the machine in place, which only its installer recovers. Two
        machines would each recover the execution (two dispatches of what was in flight),
        and the older one would write over what the other committed."""
        return self.live.setdefault(live.record.id, live)

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        """Start the loop task."""
        self.task = asyncio.create_task(self.run(), name="orchestrion-engine")

    async def stop(self, within: float | None = None) -> list[str]:
        """Commit what was posted (for ``within`` s at most: a cascade of endings can post for
        minutes; what is left uncommitted is what a crash leaves, recovered by the next
        start), stop the loop task; the executions left unfinished."""
        await self.drain(within)
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
            self.task = None
        left, self.inbox = self.inbox, []
        for item in left:  # nobody waits for ever on a turn that will not come
            if item.ack is not None and not item.ack.done():
                item.ack.set_exception(OrchestrionError("the engine stopped first"))
        self.ends.clear()
        return [eid for eid, live in self.live.items() if not live.machine.finished]

    def forget_all(self) -> None:
        """Drive nothing any more: disarm every execution, cancel whoever waits on one."""
        for live in self.live.values():
            disarm(live)
            if not live.done.done():
                live.done.cancel()
        self.live.clear()
        self.ends.clear()

    # ------------------------------------------------------------------ turns

    async def run(self) -> None:
        """The loop task: turns until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            yielded = time.perf_counter()
            while self.inbox:
                items, self.inbox = self.inbox, []
                try:
                    await self._turn(items)
                except Exception:  # the loop must survive anything a turn raises
                    logger.exception("engine turn failed")
                    self.faults.turn_failed()
                    for item in items:
                        if item.ack is not None and not item.ack.done():
                            item.ack.set_exception(
                                OrchestrionError("engine turn failed; see the log")
                            )
                # Attempts run within a turn (run_now) refill the inbox, and a SQLite commit
                # never suspends: without this, a long chain of such nodes would hold the
                # event loop from API requests, timers and workers until it ended.
                if time.perf_counter() - yielded > _TURNS_BUDGET:
                    await asyncio.sleep(0)
                    yielded = time.perf_counter()

    async def _turn(self, items: list[Posted]) -> None:
        engine = self._engine
        batch = CommitBatch(owner=engine.owner, audit=engine.audit.signer, outbox=engine.outbox)
        actions: list[Action] = []
        touched: dict[str, list[Record]] = {}
        unapplied: list[Posted] = []  # from a stream, and changed nothing: see NotApplied
        for item in items:
            live = self.live.get(item.execution_id)
            if live is None:
                if item.redeliverable and item.ack is not None and not item.ack.done():
                    # Dropped meanwhile (a failed commit) or finished: the stream entry is
                    # delivered again and routed afresh, instead of being acknowledged lost.
                    item.ack.set_exception(
                        ExecutionError(f"execution {item.execution_id} is not driven here")
                    )
                continue  # a late result for an execution that already ended
            event = item.event
            if type(event) is NodeLogged:  # lines, not a state change: stored, not applied
                batch.logs.append((item.execution_id, event))
                touched.setdefault(item.execution_id, [])
                continue
            step = live.machine.apply(event)
            if item.redeliverable and not step.records and not step.commands:
                unapplied.append(item)
            self.absorb(live, step, batch, actions, item.cause, touched)
        if actions and engine.settings.inline_attempts:
            self._run_inline(batch, actions, touched)
        if batch:
            try:
                await engine.store.commit(batch)
            except StoreError as exc:
                failed = await self._commit_alone(batch, exc)
                self._commit_failed(failed, items)
                touched = {eid: records for eid, records in touched.items() if eid not in failed}
                actions = [action for action in actions if action[0].record.id not in failed]
        for item in unapplied:
            if item.ack is not None and not item.ack.done():
                item.ack.set_exception(NotApplied(item.execution_id))
        for item in items:
            if item.ack is not None and not item.ack.done():
                item.ack.set_result(None)
        self.notify(touched)
        await self.act(actions)

    async def _commit_alone(self, batch: CommitBatch, exc: StoreError) -> dict[str, StoreError]:
        """After ``batch`` was refused: commit each execution's part of it alone, so that
        a record the store refuses fails only its own execution; those that failed."""
        parts = batch.split()
        if len(parts) <= 1 or not isinstance(exc, UnstorableValue):
            # Only a refused value is worth the split: a store that is away refuses all.
            return dict.fromkeys(parts, exc)
        failed: dict[str, StoreError] = {}
        for execution_id, part in parts.items():
            try:
                await self._engine.store.commit(part)
            except StoreError as alone:
                failed[execution_id] = alone
        return failed

    def absorb(
        self,
        live: LiveExecution,
        step: Step,
        batch: CommitBatch,
        actions: list[Action],
        cause: str | None,
        touched: dict[str, list[Record]],
    ) -> None:
        """Add what a machine step made to the turn's batch, actions and notifications."""
        if not step.records and not step.commands:
            return
        execution_id = live.record.id
        batch.correlation[execution_id] = live.record.correlation_id
        records = touched.setdefault(execution_id, [])
        first: str | None = None
        for record in step.records:
            event_id = new_event_id()
            batch.add(execution_id, record, event_id, cause if first is None else first)
            if first is None:
                first = event_id
            records.append(record)
            node = record.node
            if node is None:
                live.execution_records.append(record)
            else:
                live.node_records[node] = record
                if record.has_output:
                    live.outputs[node] = record.output
            if record.type == _NODE_QUEUED and node is not None:
                live.queued_event[node] = event_id
            elif record.type == _NODE_WAITING:
                live.waited = True
                if record.wait_reason == _CHILD:
                    self._children.parent_waits(execution_id, record.node or "")
            elif record.type == _EXECUTION_STARTED and live.record.started_at is None:
                live.record.started_at = record.at  # workflow.duration counts from here
        for command in step.commands:
            if type(command) is JudgeCriteria:
                judged = self._judge.now(live, command)
                if judged is not None:  # light conditions: the end joins this turn
                    self.absorb(live, live.machine.apply(judged), batch, actions, first, touched)
                    continue
            if isinstance(command, ExecutionFinished):
                if command.status is ExecutionStatus.COMPLETED:
                    batch.results[execution_id] = live.compiled.result_from(live.outputs)
                ending = ENDING_OF.get(command.status)
                if ending is not None and self.follows_owed(ending, live.compiled.plan.spec.name):
                    batch.follows.append((execution_id, ending))  # engine/following.py
                if live.record.parent_execution_id is not None:
                    self._children.ending(live.record, batch)  # the parent may be elsewhere
            actions.append((live, command, first))

    def _run_inline(
        self, batch: CommitBatch, actions: list[Action], touched: dict[str, list[Record]]
    ) -> None:
        """Run the turn's attempts that have nothing to wait for, and those they lead to, now.

        Their handlers have no effect outside the engine (``HandlerSpec.run_now``), so running
        one before its start is committed acts on nothing: its start and outcome join this
        turn's batch, and nobody (listener, API, worker, timer) sees any of it before the
        commit. A crash before that commit loses the lot, and recovery runs them again. A
        chain of such nodes is one commit instead of one per node, up to ``_INLINE_BUDGET``.
        """
        dispatcher = self.dispatcher
        assert dispatcher is not None
        deadline = time.perf_counter() + _INLINE_BUDGET
        ran: set[int] = set()
        i = 0
        # The attempts run here append the actions they lead to; once the budget is spent,
        # the rest is dispatched as usual, after the commit.
        while i < len(actions) and time.perf_counter() < deadline:
            live, command, _cause = actions[i]
            i += 1
            if not isinstance(command, Dispatch):
                continue
            plan = live.compiled.plan
            node = plan.nodes[plan.index[command.node]]
            if not dispatcher.can_run_inline(node.handler, node.config):
                continue
            events = dispatcher.run_inline(
                self.task_message(live, command.node, command.attempt, command.woken)
            )
            if events is None:
                continue
            ran.add(i - 1)
            cause = live.queued_event.get(command.node)
            for event in events:
                if type(event) is NodeLogged:
                    batch.logs.append((live.record.id, event))
                    continue
                self.absorb(live, live.machine.apply(event), batch, actions, cause, touched)
        if ran:
            actions[:] = [action for j, action in enumerate(actions) if j not in ran]

    def _commit_failed(self, failed: dict[str, StoreError], items: list[Posted]) -> None:
        """Forget the uncommitted turn of ``failed`` (execution -> why): reload those
        executions from the store, or park those it keeps refusing (``commit_faults.py``)."""
        if not failed:
            return
        first = next(iter(failed.values()))
        logger.error("commit failed, reloading %d execution(s): %s", len(failed), first)
        for execution_id, exc in failed.items():
            parked = self.faults.failed(execution_id, exc)
            live = self.live.pop(execution_id, None)
            if live is not None:
                disarm(live)
                if not parked:
                    asyncio.get_running_loop().call_later(1.0, self.on_commit_failed, execution_id)
        for item in items:
            if item.ack is not None and not item.ack.done() and item.execution_id in failed:
                item.ack.set_exception(failed[item.execution_id])

    def notify(self, touched: dict[str, list[Record]]) -> None:
        """Tell the listeners what was just committed."""
        if not self._listeners:
            return
        for execution_id, records in touched.items():
            for listener in list(self._listeners):
                try:
                    listener(execution_id, records)
                except Exception:
                    logger.exception("record listener failed")

    # ------------------------------------------------------------------ acting on commands

    async def act(self, actions: list[Action]) -> None:
        """Carry out committed commands: dispatch, arm timers, cancel attempts, finish."""
        tasks: list[TaskMessage] = []
        dispatcher = self.dispatcher
        assert dispatcher is not None
        stopped = self._children.nodes_stopped(actions)  # first: what follows may suspend
        abandoned = compensations_abandoned(actions)
        for n, (live, command, _cause) in enumerate(actions):
            if isinstance(command, Dispatch):
                if stopped and (live.record.id, command.node, command.attempt) in stopped:
                    continue  # queued and cancelled in one turn: never sent
                tasks.append(self.task_message(live, command.node, command.attempt, command.woken))
            elif isinstance(command, ScheduleTimer):
                arm_timer(live, command, self.post)
            elif isinstance(command, CancelNode):
                live.timers.pop((command.node, command.attempt, TimerKind.RETRY), None)
                kind = TaskKind.COMPENSATE if command.compensation else TaskKind.RUN
                await dispatcher.cancel(live.record.id, command.node, command.attempt, kind)
            elif isinstance(command, RunCompensation):
                if abandoned.get((live.record.id, command.node), -1) > n:
                    continue  # asked for and abandoned (a forced cancel) in one turn
                tasks.append(self.compensation_task(live, command.node, command.round))
            elif isinstance(command, ExecutionFinished):
                self._finish(live, command.status)
            elif isinstance(command, JudgeCriteria):
                self._judge.later(live, command)
            elif isinstance(command, Notify):
                self._engine.notices.send(live.record, command)
        if tasks:
            await dispatcher.dispatch(tasks)

    def task_message(
        self, live: LiveExecution, node_id: str, attempt: int, woken: bool
    ) -> TaskMessage:
        """The message for one attempt of ``node_id``."""
        wait_result = None
        if woken:
            run = live.machine.nodes[live.compiled.plan.index[node_id]]
            wait_result = {"woken": True, "reason": run.wait_reason, "wake_at": run.wake_at}
        return live.compiled.task_message(live.record, live.outputs, node_id, attempt, wait_result)

    def compensation_task(self, live: LiveExecution, node_id: str, round_: int) -> TaskMessage:
        """The message for ``node_id``'s compensation in the execution's ``round_``."""
        attempt = live.machine.nodes[live.compiled.plan.index[node_id]].attempt
        return live.compiled.compensation_message(
            live.record, live.outputs, node_id, attempt, round_
        )

    def _finish(self, live: LiveExecution, status: ExecutionStatus) -> None:
        self.ends.ended(live)
        self.progress.pop(live.record.id, None)
        self.faults.ended(live.record.id)
        disarm(live)
        self.live.pop(live.record.id, None)
        if not live.done.done():
            live.done.set_result(status)
        self._children.finished(
            live.record, status, live.compiled.result_from(live.outputs), live.machine.error
        )
