"""What the orchestrators of a scale-out deployment ask of their engine beyond the verbs.

Starts handed over by the API are claimed by exactly one engine; starts whose hand-over was
lost are handed over again; attempts in flight, and the compensation under way, are
dispatched again when the queue lost its data, leaving out those the journal says have ended.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrion.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    Dispatch,
    NodeFailed,
    NodeSkipped,
    NodeSucceeded,
    RunCompensation,
    Started,
)
from orchestrion.core.reasons import WaitReason
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.core.task_kinds import TaskKind
from orchestrion.engine.live import IN_FLIGHT, Action, LiveExecution
from orchestrion.errors import OrchestrionError
from orchestrion.store.base import ExecutionFilter, ExecutionRecord

if TYPE_CHECKING:
    from orchestrion.dispatch.base import TaskMessage
    from orchestrion.engine.parts import EngineParts
    from orchestrion.engine.starting import Starts

__all__ = ["ScaleOutHooks"]


class ScaleOutHooks:
    """Hand-overs and re-dispatch for one engine (see the module docstring)."""

    def __init__(self, parts: EngineParts, starts: Starts) -> None:
        self._parts = parts
        self._starts = starts

    async def begin_handed_over(self, record: ExecutionRecord) -> bool:
        """Start a triggered execution another process handed over (``Started`` from the
        completions stream). Exactly one engine wins the claim; the others return False."""
        store = self._parts.engine.store
        if not await self._parts.ownership.claim(record.id, None):
            return False
        fresh = await store.get_execution(record.id)
        if fresh.status is not ExecutionStatus.PENDING:
            # A late duplicate of a start that already ran: give the claim back.
            await store.release_executions(self._parts.ownership.owner, [record.id])
            return False
        compiled = await self._parts.definitions.compiled_for(fresh.definition_id)
        await self._starts.begin(fresh, compiled)
        return True

    async def hand_over_again(self, older_than: float) -> int:
        """Send ``Started`` again for triggered executions no orchestrator has claimed yet
        (pending, with a correlation id, no owner) and created at least ``older_than``
        seconds ago (a younger start may be on its way): their hand-over was lost with the
        queue's data, or never reached it (the API committed the start, then the queue
        failed). A start delivered twice is claimed once. Returns how many."""
        count = 0
        cursor: str | None = None
        before = time.time() - older_than
        store = self._parts.engine.store
        while True:
            page, cursor = await store.list_executions(
                ExecutionFilter(status=[ExecutionStatus.PENDING], cursor=cursor, limit=500)
            )
            for record in page:
                if (
                    record.correlation_id is not None
                    and record.owner is None
                    and record.created_at <= before
                ):
                    await self._parts.forward(record.id, Started(time.time()))
                    count += 1
            if cursor is None:
                return count

    async def redispatch_in_flight(self, check_journal: bool) -> int:
        """Dispatch again every queued or running attempt of the live executions, and the
        compensation each one waits for (the queue lost its data: a Redis restart without
        persistence). Returns how many.

        ``check_journal``: first read each execution's record and node runs from the store
        and leave out attempts and compensations that ended there (a completion already
        committed, or committed by another engine that took the execution over) and
        executions this engine no longer owns, so a completed node never runs again."""
        actions: list[Action] = []
        for live in list(self._parts.loop.live.values()):
            if live.machine.finished:
                continue
            plan = live.compiled.plan
            candidates = [
                (i, run.attempt)
                for i, run in enumerate(live.machine.nodes)
                if run.state is NodeState.QUEUED or run.state is NodeState.RUNNING
            ]
            undoing = live.machine.compensation_under_way()
            round_ = live.machine.compensation_round
            if (candidates or undoing is not None) and check_journal:
                candidates, undoing = await self._not_ended(live, candidates, undoing)
            machine = live.machine
            if (
                undoing is not None
                and undoing == machine.compensation_under_way()
                and round_ == machine.compensation_round
            ):  # else its answer was applied meanwhile
                actions.append((live, RunCompensation(undoing, round_), None))
            for i, attempt in candidates:
                run = live.machine.nodes[i]
                if run.attempt != attempt or run.state not in IN_FLIGHT:
                    continue  # its result was applied meanwhile
                woken = run.wait_reason is not None and run.wait_reason != WaitReason.RETRY
                actions.append((live, Dispatch(plan.ids[i], run.attempt, woken=woken), None))
        if actions:
            await self._parts.loop.act(actions)
        return len(actions)

    async def _not_ended(
        self, live: LiveExecution, candidates: list[tuple[int, int]], undoing: str | None
    ) -> tuple[list[tuple[int, int]], str | None]:
        """The (node index, attempt) pairs of ``candidates``, and the node whose compensation
        is ``undoing``, that neither the journal nor the results waiting in this engine's
        inbox say have ended."""
        execution_id = live.record.id
        store = self._parts.engine.store
        try:
            record = await store.get_execution(execution_id)
            stored = {r.node_id: r for r in await store.get_node_runs(execution_id)}
        except OrchestrionError:
            # The store does not answer: dispatching again is the safe side (a lost attempt
            # would stall the execution; a duplicate runs under the same idempotency key).
            return candidates, undoing
        if record.status in FINAL_EXECUTION_STATES or record.owner != self._parts.ownership.owner:
            return [], None  # ended, or driven by another engine now: not ours to dispatch
        mine = [
            posted.event for posted in self._parts.loop.inbox if posted.execution_id == execution_id
        ]
        arrived = {
            (event.node, event.attempt)
            for event in mine
            if isinstance(event, NodeSucceeded | NodeFailed | NodeSkipped)
        }
        if undoing is not None:
            undone = stored.get(undoing)
            if (undone is not None and undone.compensation is not None) or any(
                isinstance(event, CompensationSucceeded | CompensationFailed)
                and event.node == undoing
                for event in mine
            ):
                undoing = None
        ids = live.compiled.plan.ids
        kept = []
        for i, attempt in candidates:
            if (ids[i], attempt) in arrived:
                continue
            run = stored.get(ids[i])
            if run is not None and (
                run.attempt > attempt or (run.attempt == attempt and run.state not in IN_FLIGHT)
            ):
                continue
            kept.append((i, attempt))
        return kept, undoing

    def still_in_flight(self, tasks: list[TaskMessage]) -> list[TaskMessage]:
        """The attempts of ``tasks`` this engine still waits for (a dispatch that is sent
        late, after the queue failed, must not run an attempt whose result came meanwhile)."""
        kept = []
        live_executions = self._parts.loop.live
        for task in tasks:
            live = live_executions.get(task.execution_id)
            if live is None or live.machine.finished:
                continue
            index = live.compiled.plan.index.get(task.node_id)
            if index is None:
                continue
            run = live.machine.nodes[index]
            if task.kind == TaskKind.COMPENSATE:
                machine = live.machine
                if (
                    machine.compensation_under_way() == task.node_id
                    and machine.compensation_round == task.compensation_round
                ):
                    kept.append(task)
            elif run.attempt == task.attempt and run.state in IN_FLIGHT:
                kept.append(task)
        return kept
