"""Where an event from a stream goes: to this engine, to the execution's owner, or nowhere.

In scale-out mode events for an execution reach an orchestrator from its own inbox (results of
attempts it dispatched) or from the shared completions stream (starts handed over by the API,
control requests, results whose orchestrator died). Each execution is driven by exactly one
engine at a time (its owner, see ``engine/ownership.py``), so the router:

- hands the event to this engine when it drives the execution;
- forwards it to the owner's inbox when another live engine drives it;
- otherwise claims the execution (a compare-and-swap on its owner), loads it from the store
  and recovers it, then hands the event over: that is how the work of a dead orchestrator is
  taken over, and how a start handed over by the API is picked up exactly once.

Events for finished or unknown executions are dropped (a late duplicate), except a retry
request, which revives a finished execution.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from orchestrion.core.events import Event, RetryRequested, Started, WaitResolved
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
from orchestrion.dispatch.base import Routed
from orchestrion.engine.decision_answers import journal_refused
from orchestrion.errors import ExecutionNotFound, OrchestrionError

if TYPE_CHECKING:
    from orchestrion.dispatch.base import ClusterDispatcher, TaskMessage
    from orchestrion.engine.facade import Engine
    from orchestrion.engine.ownership import Ownership
    from orchestrion.engine.scaleout import ScaleOutHooks

__all__ = ["EventRouter", "Routed"]

logger = logging.getLogger(__name__)


class EventRouter:
    """Routes (execution id, event) pairs for one engine; see the module docstring."""

    def __init__(
        self,
        engine: Engine,
        cluster: ClusterDispatcher,
        ownership: Ownership,
        hooks: ScaleOutHooks,
    ) -> None:
        self._engine = engine
        self._cluster = cluster
        self._ownership = ownership
        self._hooks = hooks

    @property
    def owner(self) -> str:
        return self._engine.owner

    async def redispatch(self) -> int:
        """Dispatch again what is in flight and has not ended in the journal, and hand over
        again the starts nobody took (the queue lost its data)."""
        hooks = self._hooks
        return await hooks.redispatch_in_flight(check_journal=True) + (
            await hooks.hand_over_again(0.0)
        )

    def still_in_flight(self, tasks: list[TaskMessage]) -> list[TaskMessage]:
        """Those of ``tasks`` whose attempts this engine still waits for."""
        return self._hooks.still_in_flight(tasks)

    async def redispatch_guarded(self) -> int:
        """Dispatch every in-flight attempt again through the guard: only lost ones go out."""
        return await self._hooks.redispatch_in_flight(check_journal=False)

    async def hand_over_again(self, older_than: float = 0.0) -> int:
        return await self._hooks.hand_over_again(older_than)

    async def settle_unapplied(self, execution_id: str, event: Event) -> Routed:
        """See ``EventRoute.settle_unapplied``: the store says whether the machine here was
        current (the event a duplicate) or behind an engine that took the execution over
        (the event is that engine's: a result swallowed here would strand its node)."""
        try:
            record = await self._engine.store.get_execution(execution_id)
        except ExecutionNotFound:
            return Routed.DROPPED
        except OrchestrionError:
            return Routed.RETRY_LATER
        if record.status in FINAL_EXECUTION_STATES or record.owner == self.owner:
            return Routed.DROPPED
        if not self._ownership.held_elsewhere(record):
            return Routed.RETRY_LATER  # nobody alive drives it: taken over when it comes again
        try:
            await self._cluster.forward(record.owner, execution_id, event)
        except Exception as exc:  # the queue is away: the entry comes again
            logger.warning("forwarding %s to %s failed (%s)", _name(event), record.owner, exc)
            return Routed.RETRY_LATER
        return Routed.FORWARDED

    async def refused(self, execution_id: str, event: Event) -> None:
        """See ``EventRoute.refused``."""
        if isinstance(event, WaitResolved) and event.decision:
            await journal_refused(self._engine, execution_id, event)

    def deliver_if_live(self, execution_id: str, event: Event) -> asyncio.Future[None] | None:
        """The fast path: a future for the commit when this engine drives the execution."""
        if self._engine.is_live(execution_id):
            return self._engine.deliver(execution_id, event)
        return None

    async def route(
        self, execution_id: str, event: Event
    ) -> tuple[Routed, asyncio.Future[None] | None]:
        engine = self._engine
        fast = self.deliver_if_live(execution_id, event)
        if fast is not None:
            return Routed.HERE, fast
        try:
            record = await engine.store.get_execution(execution_id)
        except ExecutionNotFound:
            logger.warning("dropping %s for unknown execution %s", _name(event), execution_id)
            return Routed.DROPPED, None
        except OrchestrionError:
            return Routed.RETRY_LATER, None
        if record.status in FINAL_EXECUTION_STATES and not isinstance(event, RetryRequested):
            return Routed.DROPPED, None  # a late result or request: the execution is over
        if self._ownership.held_elsewhere(record):
            await self._cluster.forward(record.owner, execution_id, event)
            return Routed.FORWARDED, None
        try:
            if isinstance(event, Started):
                if record.status is not ExecutionStatus.PENDING:
                    return Routed.DROPPED, None  # started already
                taken = await self._hooks.begin_handed_over(record)
                return (Routed.HERE if taken else Routed.DROPPED), None
            if not await engine.adopt(record):
                return await self._claimed_first(execution_id, event), None
        except OrchestrionError:
            logger.exception("could not take over execution %s", execution_id)
            return Routed.RETRY_LATER, None
        fast = self.deliver_if_live(execution_id, event)
        if fast is None:
            return Routed.DROPPED, None
        return Routed.HERE, fast

    async def _claimed_first(self, execution_id: str, event: Event) -> Routed:
        """Another engine claimed the execution just before this one: the event is its own
        (a retry among several sent at once finds that engine's retry under way and is
        refused, instead of waiting and running again once that retry has ended)."""
        try:
            record = await self._engine.store.get_execution(execution_id)
        except OrchestrionError:
            return Routed.RETRY_LATER
        if not self._ownership.held_elsewhere(record):
            return Routed.RETRY_LATER  # ask again
        try:
            await self._cluster.forward(record.owner, execution_id, event)
        except Exception as exc:  # the queue is away: the entry comes again
            logger.warning("forwarding %s to %s failed (%s)", _name(event), record.owner, exc)
            return Routed.RETRY_LATER
        return Routed.FORWARDED


def _name(event: Event) -> str:
    return type(event).__name__
