"""Waiting for an execution's outcome (final, or waiting for a person) and building its result.

An execution driven here is awaited through its machine; one driven elsewhere is read from
the store until it gets there.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from orchestrion.core.criteria import CRITERIA_EVENT_TYPES, CriterionResult
from orchestrion.core.notices import journalled_notices
from orchestrion.core.reasons import DECIDABLE_WAITS
from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.engine import lineage
from orchestrion.engine.live import LiveExecution
from orchestrion.engine.live_result import committed_record, committed_runs
from orchestrion.engine.notices import NOTICE_EVENT_TYPES
from orchestrion.engine.waiting import WAIT_EVENT_TYPES, waited_seconds
from orchestrion.store.base import EventRecord, ExecutionRecord, NodeRunRecord

if TYPE_CHECKING:
    from orchestrion.engine.parts import EngineParts

__all__ = ["Outcomes"]

# Every kind of journal event a result reads (wait times, success criteria, notices).
_RESULT_EVENT_TYPES = sorted({*WAIT_EVENT_TYPES, *CRITERIA_EVENT_TYPES, *NOTICE_EVENT_TYPES})


class Outcomes:
    """``wait``, ``settle`` and ``result`` of one engine (see the module docstring)."""

    def __init__(self, parts: EngineParts) -> None:
        self._parts = parts

    async def wait(self, execution_id: str, timeout: float | None) -> ExecutionResult:
        """See ``Engine.wait``."""
        live_executions = self._parts.loop.live
        live = live_executions.get(execution_id)
        async with asyncio.timeout(timeout):
            if live is not None:
                await asyncio.shield(live.done)
                if not live.waited:  # driven here from its start to its end, never waiting
                    return await self._committed_result(live)
            else:
                while True:
                    record = await self._parts.engine.store.get_execution(execution_id)
                    if record.status in FINAL_EXECUTION_STATES:
                        # Final: no need to read it again. Wait times to read unless it
                        # ended here without waiting, and has not ended again since.
                        ended = self._parts.loop.ends.never_waited.get(execution_id)
                        waited = (
                            ended is None
                            or record.finished_at is None
                            or record.finished_at > ended
                        )
                        kept = self._parts.loop.ends.ended_here.get(execution_id)
                        if not waited and kept is not None and kept[1] == ended:
                            # Ended here (this end, as the store shows): what it committed
                            # is kept, so its node runs need not be read back.
                            return await self._committed_result(kept[0], record)
                        return await self.result(record, waited=waited)
                    live = live_executions.get(execution_id)
                    if live is not None:
                        await asyncio.shield(live.done)
                        break
                    await asyncio.sleep(0.2)
        return await self.result(await self._parts.engine.store.get_execution(execution_id))

    async def settle(self, execution_id: str, timeout: float | None) -> ExecutionResult:
        """See ``Engine.settle``."""
        engine, loop = self._parts.engine, self._parts.loop
        async with asyncio.timeout(timeout):
            while True:
                live = loop.live.get(execution_id)
                if live is None:
                    # Driven by another process, or final: read the store until it is final
                    # or waits for a person.
                    record = await engine.store.get_execution(execution_id)
                    if record.status in FINAL_EXECUTION_STATES or (
                        record.status is ExecutionStatus.WAITING
                        and execution_id not in loop.live
                        and await lineage.pending_decisions(engine, execution_id)
                    ):
                        return await self.result(record)
                    if execution_id not in loop.live:
                        await asyncio.sleep(0.2)
                    continue
                # Hand over only once nothing goes on without a person: a sibling still
                # running (a child, an attempt) would otherwise be left half done.
                if self._handed_over(live, execution_id):
                    # Events already posted (a recovered parent's wake of its child node)
                    # may set it going again: decide on what they leave.
                    await loop.drain()
                    if self._handed_over(live, execution_id):
                        break
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(live.done), 0.05)
        await loop.drain()  # the waiting record is committed before anyone reads it
        return await self.result(await engine.store.get_execution(execution_id))

    def _handed_over(self, live: LiveExecution, execution_id: str) -> bool:
        return live.machine.finished or (
            live.machine.status is ExecutionStatus.WAITING and self._waits_for_person(execution_id)
        )

    def _waits_for_person(self, execution_id: str) -> bool:
        """Whether the execution, or a child it waits on driven here, waits for a decision."""
        live_executions = self._parts.loop.live
        for live in live_executions.values():
            if not any(
                run.state is NodeState.WAITING and run.wait_reason in DECIDABLE_WAITS
                for run in live.machine.nodes
            ):
                continue
            current: LiveExecution | None = live
            for _ in range(32):  # up the parent chain, as far as it is driven here
                if current is None:
                    break
                if current.record.id == execution_id:
                    return True
                parent = current.record.parent_execution_id
                current = live_executions.get(parent) if parent is not None else None
        return False

    async def node_states(self, execution_id: str) -> dict[str, NodeState]:
        """Each node's state: the live machine's while this engine drives it, else stored."""
        live = self._parts.loop.live.get(execution_id)
        if live is not None:
            plan = live.compiled.plan
            return {plan.ids[i]: run.state for i, run in enumerate(live.machine.nodes)}
        runs = await self._parts.engine.store.get_node_runs(execution_id)
        return {run.node_id: run.state for run in runs}

    async def status(self, execution_id: str) -> tuple[ExecutionRecord, ExecutionResult]:
        """The execution's record and its result from one store read: the record, the node
        runs and the events of every kind a result may read, before the definition says
        which it needs (the others are few: an execution without success criteria or
        notices has none of theirs but its retries)."""
        found = await self._parts.engine.store.get_execution_snapshot(
            execution_id, _RESULT_EVENT_TYPES
        )

        async def events(types: list[str]) -> list[EventRecord]:
            return [event for event in found.events if event.type in types]

        result = await self._build(found.record, found.runs, events, waited=True)
        return found.record, result

    async def result(self, record: ExecutionRecord, *, waited: bool = True) -> ExecutionResult:
        """The result of ``record``: its state, result and node states (``waited=False``:
        known never to have waited, so no wait times to read)."""
        execution_id = record.id
        runs = await self._parts.engine.store.get_node_runs(execution_id)

        async def events(types: list[str]) -> list[EventRecord]:
            return await self._events(execution_id, types)

        return await self._build(record, runs, events, waited=waited)

    async def _committed_result(
        self, live: LiveExecution, stored: ExecutionRecord | None = None
    ) -> ExecutionResult:
        """The result of an execution started here that ended here without waiting, from
        what the engine committed of it (``live_result.py``): no rows read back but
        ``stored``, its execution row when just read (which shows this end)."""
        record = committed_record(live) if stored is None else stored
        runs = committed_runs(live)
        execution_id = record.id

        async def events(types: list[str]) -> list[EventRecord]:
            return await self._events(execution_id, types)

        return await self._build(record, runs, events, waited=False)

    async def _build(
        self,
        record: ExecutionRecord,
        runs: list[NodeRunRecord],
        events_of: Callable[[list[str]], Awaitable[list[EventRecord]]],
        *,
        waited: bool,
    ) -> ExecutionResult:
        """The result of ``record`` with its ``runs``; ``events_of`` gives the execution's
        journal events of some types, oldest first."""
        execution_id = record.id
        definition = await self._parts.definitions.record(record.definition_id)
        compiled = await self._parts.definitions.compiled_for(record.definition_id)
        seconds: dict[str, float] = {}
        if waited:
            by_node = {run.node_id: run for run in runs}
            seconds = waited_seconds(await events_of(WAIT_EVENT_TYPES), by_node, time.time())
        declared = [(c.condition, c.required) for c in compiled.plan.spec.success_criteria]
        criteria: tuple[CriterionResult, ...] = ()
        if declared:
            criteria = CriterionResult.latest(declared, await events_of(CRITERIA_EVENT_TYPES))
        notices: tuple[dict[str, Any], ...] = ()
        if compiled.plan.routing or compiled.plan.on_error:
            notices = journalled_notices(execution_id, await events_of(NOTICE_EVENT_TYPES))
        return ExecutionResult.build(
            record,
            definition.name,
            definition.version,
            runs,
            compiled.plan.ids,
            seconds,
            criteria,
            notices,
        )

    async def _events(self, execution_id: str, types: list[str]) -> list[EventRecord]:
        """Every journal event of ``types`` of the execution, oldest first."""
        events: list[EventRecord] = []
        after, size = 0, 1000
        store = self._parts.engine.store
        while True:
            page = await store.list_events(execution_id, after_seq=after, limit=size, types=types)
            events.extend(page)
            if len(page) < size:
                break
            after = page[-1].seq
        return events
