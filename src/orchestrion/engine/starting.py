"""Starting executions: create, trigger, and the one-call start, in this process or handed over.

An engine that drives executions makes each one live and commits its start; one that does
not (the API in scale-out mode) records the execution and hands its start to whichever
orchestrator claims it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import Started
from orchestrion.core.idempotency import caller_key
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.engine.creation import ExecutionCreator
from orchestrion.engine.ids import new_record_id
from orchestrion.engine.nesting import child_labels, root_labels
from orchestrion.engine.timers import arm_deadline
from orchestrion.errors import IdempotencyConflict, InvalidTransition
from orchestrion.governance.trust import Trust, process_trust, stricter
from orchestrion.store.base import DefinitionRecord, ExecutionRecord
from orchestrion.store.pending_trigger import PendingTrigger

if TYPE_CHECKING:
    from orchestrion.definition.model import NodeSpec
    from orchestrion.engine.parts import EngineParts

__all__ = ["Starts"]

logger = logging.getLogger(__name__)


class Starts:
    """Creates and starts the executions of one engine (see the module docstring)."""

    def __init__(self, parts: EngineParts) -> None:
        self._parts = parts
        self._creator = ExecutionCreator(lambda: parts.engine.store)
        self._background: set[asyncio.Future[None]] = set()

    async def create_execution(
        self,
        definition_id: str,
        idempotency_key: str | None,
        inputs: dict[str, Any] | None,
        labels: dict[str, Any] | None,
    ) -> tuple[ExecutionRecord, bool]:
        """See ``Engine.create_execution``."""
        idempotency_key = caller_key(idempotency_key)
        definition = await self._parts.definitions.record(definition_id)
        self._parts.definitions.check_limits(definition)
        record = ExecutionRecord(
            id=new_record_id(),
            definition_id=definition_id,
            status=ExecutionStatus.PENDING,
            created_at=time.time(),
            inputs=dict(inputs or {}),
            idempotency_key=idempotency_key,
            # The limits on its tree of children, decided here, once (engine/nesting.py).
            labels={**(labels or {}), **root_labels(self._parts.engine.settings)},
            trust=stricter(process_trust(self._parts.engine.governance), definition.trust),
        )
        return await self._parts.engine.store.create_execution(record)

    async def check_start(
        self, definition_id: str, inputs: dict[str, Any], overrides: dict[str, dict[str, Any]]
    ) -> None:
        """See ``Engine.check_start``: the checks of ``trigger``, with the trust the execution
        would be made with (``create_execution``), before it is made."""
        definitions = self._parts.definitions
        definition = await definitions.record(definition_id)
        trust = stricter(process_trust(self._parts.engine.governance), definition.trust)
        compiled = await definitions.compiled_for(definition_id)
        definitions.checked_start(compiled, inputs, overrides, trust, code_policy=True)

    async def trigger(
        self,
        execution_id: str,
        inputs: dict[str, Any] | None,
        overrides: dict[str, dict[str, Any]] | None,
        correlation_id: str | None,
    ) -> ExecutionRecord:
        """See ``Engine.trigger``."""
        engine, definitions = self._parts.engine, self._parts.definitions
        engine.check_accepting()
        store = engine.store
        record = await store.get_execution(execution_id)
        compiled = await definitions.compiled_for(record.definition_id)
        merged = {**record.inputs, **(inputs or {})}
        trust = stricter(record.trust, process_trust(engine.governance))
        # Every problem of the inputs and the overrides in one refusal, before any write, and
        # before the state: what the request says is wrong whatever state the execution is in.
        checked = definitions.checked_start(compiled, merged, overrides, trust, code_policy=True)
        if record.status is not ExecutionStatus.PENDING or execution_id in self._parts.loop.live:
            raise InvalidTransition(
                f"execution {execution_id} was already triggered (status {record.status.value})"
            )
        record.inputs, record.overrides = checked
        if not engine.drives:
            # No claim to make here (an orchestrator claims it when handed the start): the
            # inputs are written only if no other trigger, on any API process, came first.
            await self._mark_triggered(record, correlation_id, trust)
            await self.begin(record, compiled)
            return record
        correlation_id = correlation_id or record.correlation_id or execution_id
        if trust.trusted or not Trust.of(record.trust).trusted:
            # The claim and the inputs in one write: one commit (one take of SQLite's write
            # lock) instead of two before the start's.
            given = (record.inputs, record.overrides, correlation_id)
            await self._parts.ownership.claim_for(record, "trigger", None, given)
            record.correlation_id = correlation_id
            await self.begin(record, compiled)
            return record
        await self._parts.ownership.claim_for(record, "trigger", expected=None)
        # Inputs and overrides from an untrusted caller: never trusted again, and the
        # execution untrusted before they are stored.
        await store.distrust_execution(execution_id)
        record.trust = trust
        record.correlation_id = correlation_id
        await store.update_execution_inputs(
            execution_id, record.inputs, record.overrides, record.correlation_id
        )
        await self.begin(record, compiled)
        return record

    async def _mark_triggered(
        self, record: ExecutionRecord, correlation_id: str | None, trust: Trust
    ) -> None:
        distrust = not trust.trusted and Trust.of(record.trust).trusted
        record.correlation_id = correlation_id or record.correlation_id or record.id
        marked = PendingTrigger(
            record.id, record.inputs, record.overrides, record.correlation_id, distrust
        )
        if not await self._parts.engine.store.trigger_pending(marked):
            raise InvalidTransition(f"execution {record.id} was already triggered")
        if distrust:
            record.trust = trust

    async def start_or_find(
        self,
        definition: Any,
        inputs: dict[str, Any] | None,
        idempotency_key: str | None,
        overrides: dict[str, dict[str, Any]] | None,
        correlation_id: str | None,
        parent: tuple[str, str, int] | None,
        inputs_trust: Trust | None = None,
        labels: dict[str, Any] | None = None,
        siblings: int = 1,
    ) -> tuple[ExecutionRecord, bool]:
        """See ``Engine.start_execution``; also whether this call made the execution (False:
        the ``idempotency_key`` named one made before, which is returned). ``inputs_trust``:
        that of whatever the inputs came from (an execution whose end starts this one), when
        it is not the caller's; ``labels``: stored with the execution (what started it);
        ``siblings``: how many children the parent's node starts with this one (a map's)."""
        engine, definitions = self._parts.engine, self._parts.definitions
        engine.check_accepting()
        # The engine's own starts (events, ticks, children) pass the keys it derived.
        idempotency_key = caller_key(idempotency_key)
        # Content handed over is the caller's; a stored definition keeps its own level.
        trust = process_trust(engine.governance)
        if isinstance(definition, DefinitionRecord):
            definition_id = definition.id
            # The stored row's level, not the one the caller's object claims.
            stored_trust = (await definitions.record(definition_id)).trust
            trust = stricter(trust, definition.trust, stored_trust)
        else:
            definition_id = (await definitions.submit(definition)).id
        labels = dict(labels or {})
        if parent is not None:  # a child: no more trusted than its parent, within the limits
            parent_record, parent_nodes = await self._parent(parent[0])
            trust = stricter(trust, Trust.of(parent_record.trust))
            canonical = engine.registry.canonical_name
            labels.update(
                child_labels(parent_record, parent_nodes, canonical, engine.settings, siblings)
            )
        else:  # a root: the limits on its tree of children, decided here (engine/nesting.py)
            labels.update(root_labels(engine.settings))
        if inputs_trust is not None:
            trust = stricter(trust, inputs_trust)
        compiled = await definitions.compiled_for(definition_id)
        checked_inputs, checked_overrides = definitions.checked_start(
            compiled, dict(inputs or {}), overrides, trust
        )
        now = time.time()
        execution_id = new_record_id()
        drives = engine.drives
        record = ExecutionRecord(
            id=execution_id,
            definition_id=definition_id,
            status=ExecutionStatus.PENDING,
            created_at=now,
            inputs=checked_inputs,
            overrides=checked_overrides,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id or execution_id,
            owner=engine.owner if drives else None,
            lease_until=now + engine.settings.lease_seconds if drives else None,
            trust=trust,
            labels=labels,
        )
        if parent is not None:
            record.parent_execution_id, record.parent_node_id = parent[0], parent[1]
            record.labels["parent_attempt"] = parent[2]
        # A caller that gives up while the batch is written gets its execution made all the
        # same, so it is begun all the same, as a start cancelled a moment later would be.
        stored, created = await self._creator.create(
            record, abandoned=functools.partial(self._begin_abandoned, compiled)
        )
        if not created:
            await self._check_same_workflow(stored, compiled, idempotency_key)
            if (
                stored.status is not ExecutionStatus.PENDING
                or stored.owner is not None  # a start made it, and is beginning it now
                or stored.id in self._parts.loop.live
            ):
                return stored, False
            # Made pending by create_execution with this key, never triggered: trigger it.
            try:
                return await self.trigger(stored.id, inputs, overrides, correlation_id), False
            except InvalidTransition:
                # Another start with this key (an event delivered twice at once, on any API
                # process) triggered it first: that one is what this key names.
                return await self._parts.engine.store.get_execution(stored.id), False
        await self.begin(stored, compiled)
        return stored, True

    async def _check_same_workflow(
        self, stored: ExecutionRecord, compiled: CompiledWorkflow, key: str | None
    ) -> None:
        """A key met again must name an execution of the same workflow: one of another
        (a key a caller chose to match an event's or a schedule's) is not this start's."""
        if stored.definition_id == compiled.definition_id:
            return
        name = compiled.plan.spec.name
        other = await self._parts.definitions.record(stored.definition_id)
        if other.name != name:
            raise IdempotencyConflict(
                f"idempotency key {key!r} already names execution {stored.id} of workflow"
                f" '{other.name}', not of '{name}': nothing was started"
            )

    async def begin(self, record: ExecutionRecord, compiled: CompiledWorkflow) -> None:
        """Make ``record`` live and commit its start (the execution is owned by us); or, when
        this engine does not drive, hand the start to whichever orchestrator claims it."""
        if not self._parts.engine.drives:
            try:
                await self._parts.forward(record.id, Started(time.time()))
            except Exception as exc:
                from orchestrion.cluster.connection import queue_unavailable

                if not queue_unavailable(exc):
                    raise
                # The start is committed: the orchestrators' sweep of pending starts hands
                # it over once the queue answers, so the caller is told it was accepted.
                logger.warning(
                    "execution %s is recorded but its start could not be handed over yet"
                    " (%s: %s); an orchestrator's sweep will hand it over",
                    record.id,
                    type(exc).__name__,
                    exc,
                )
            return
        loop = self._parts.loop
        live = loop.make_live(record, compiled, {})
        live.waited = False  # a new execution: nothing journalled yet
        loop.live[record.id] = live
        await loop.post_and_wait(record.id, Started(time.time()))
        arm_deadline(live, time.time(), loop.post)

    async def _parent(self, execution_id: str) -> tuple[ExecutionRecord, tuple[NodeSpec, ...]]:
        """A parent's record and the nodes of its workflow."""
        live = self._parts.loop.live.get(execution_id)
        if live is not None:
            return live.record, live.compiled.plan.nodes
        record = await self._parts.engine.store.get_execution(execution_id)
        compiled = await self._parts.definitions.compiled_for(record.definition_id)
        return record, compiled.plan.nodes

    def _begin_abandoned(
        self, compiled: CompiledWorkflow, stored: ExecutionRecord, created: bool
    ) -> None:
        if created and self._parts.engine.accepting:
            task = asyncio.ensure_future(self.begin(stored, compiled))
            self._background.add(task)
            task.add_done_callback(self._background.discard)
