"""The engine users see (``orchestrion.Engine``): construction, start and stop, the verbs.

The work is done by collaborators the engine owns, one concern each: the loop that applies
events and commits once per turn (``loop.py``), definitions and their compile cache
(``definitions.py``), starts (``starting.py``), control verbs (``control.py``), outcomes
(``outcomes.py``), the order of start and stop (``lifecycle.py``), recovery (``recovery.py``),
ownership of executions (``ownership.py``), what scale-out orchestrators ask (``scaleout.py``).

Embedded mode is this engine with ``SQLiteStore`` and ``LocalDispatcher``; scale-out runs the
same loop in the orchestrator process with other adapters.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import Event
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.notices import NoticeSink
from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.definition.limits import DefinitionLimits
from orchestrion.definition.triggers import WebhookTrigger
from orchestrion.dispatch.base import Dispatcher
from orchestrion.engine import lifecycle, lineage
from orchestrion.engine.children import ChildExecutions
from orchestrion.engine.commit_faults import CommitFaults
from orchestrion.engine.control import ControlVerbs
from orchestrion.engine.control_requests import ControlRequests
from orchestrion.engine.deciders import Decider
from orchestrion.engine.definitions import Definitions
from orchestrion.engine.deliveries import SinkDeliveries
from orchestrion.engine.emitting import Emitted, EventTriggers
from orchestrion.engine.following import Followers
from orchestrion.engine.leases import Leases
from orchestrion.engine.loop import EngineLoop, RecordListener
from orchestrion.engine.notices import NoticeDelivery
from orchestrion.engine.outcomes import Outcomes
from orchestrion.engine.ownership import Ownership, new_owner_id
from orchestrion.engine.parts import EngineParts
from orchestrion.engine.reads import EngineReads
from orchestrion.engine.recovery import Recovery
from orchestrion.engine.scaleout import ScaleOutHooks
from orchestrion.engine.schedules import ScheduleVerbs
from orchestrion.engine.sign_outs import SignOuts
from orchestrion.engine.sinks import make_sinks, sinks_config
from orchestrion.engine.starting import Starts
from orchestrion.engine.versions import VersionVerbs
from orchestrion.errors import DispatchError, ExecutionError
from orchestrion.execution import enforce
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import Resources
from orchestrion.handlers.registry import HandlerRegistry, default_registry
from orchestrion.settings import Settings, load_settings
from orchestrion.store.audit_log import AuditLog
from orchestrion.store.base import DefinitionRecord, ExecutionFilter, ExecutionRecord, Store

if TYPE_CHECKING:
    from orchestrion.engine.publishing import Publisher

__all__ = ["Engine", "RecordListener"]

logger = logging.getLogger(__name__)

_HAND_OVER_SECONDS = 3.0  # a start's hand-over to the queue; the sweep does the rest


class Engine:
    """Runs workflows durably. Use as ``async with Engine(...) as engine``.

    ``database_url`` picks the store (``sqlite:///file.db`` by default, ``memory://`` for
    throw-away runs); ``store``/``dispatcher`` inject adapters directly.
    """

    def __init__(
        self,
        database_url: str | None = None,
        *,
        store: Store | None = None,
        dispatcher: Dispatcher | None = None,
        registry: HandlerRegistry | None = None,
        settings: Settings | None = None,
        concurrency: int | None = None,
        rng: random.Random | None = None,
        resume: bool = True,
        drive: bool = True,
        governance: Governance | None = None,
        notice_sinks: Sequence[NoticeSink] | None = None,
    ) -> None:
        self.settings = settings or load_settings()
        # Where routing and error handling notices go after their commit (engine/notices.py).
        self.notices = NoticeDelivery(self.settings, notice_sinks, self)
        # The policy in force: trusted (one's own definitions) unless the caller says not.
        self.governance = governance or Governance.from_settings(self.settings)
        # The audit trail: commits carry its signer, so transitions are audited with them.
        self.audit = AuditLog(self.governance, lambda: self.store)
        # What the API and the tools may read (and a dead letter's drop, audited).
        self.reads = EngineReads(lambda: self.store, lambda: self.audit.signer)
        self.sign_outs = SignOuts(lambda: self.store)  # the service's signed-out sessions
        self.database_url = database_url or self.settings.database_url
        self._store = store
        self._dispatcher = dispatcher
        self.registry = registry or default_registry()
        self.concurrency = concurrency or self.settings.concurrency
        # drive=False (the API in scale-out mode): never run executions here; hand starts and
        # control requests to the orchestrators through the cluster dispatcher.
        self._drives = drive
        self._listeners: list[RecordListener] = []
        self._resources = Resources(enforce.controls_of(self.governance), registry=self.registry)
        self._accepting = False
        self._started = False
        self.owner = new_owner_id()
        self.leases = Leases(lambda: self.store, self.owner)  # work one process does at a time
        self._children = ChildExecutions(self, lambda: self._starts)
        self._requests = ControlRequests(self, self._children)
        self._ownership = Ownership(self.owner, self.settings.lease_seconds, lambda: self.store)
        self._definitions = Definitions(self)
        self._loop = EngineLoop(self, self._children, self._listeners, rng or random.Random())
        self.notices.listen = self._loop.notify
        parts = EngineParts(self, self._loop, self._ownership, self._definitions, self._forward)
        self._recovery = Recovery(parts, resume=resume and drive)
        self._starts = Starts(parts)
        self._control = ControlVerbs(parts, self._recovery, self._requests, self._children)
        self._outcomes = Outcomes(parts)
        self._scaleout = ScaleOutHooks(parts, self._starts)
        self._events = EventTriggers(parts, self._starts)
        self.followers = Followers(parts, self._events)  # workflow.completed / .failed
        self._listeners.append(self.followers.on_records)
        self._loop.follows_owed = self.followers.owed
        self.schedules = ScheduleVerbs(self)  # scheduled triggers (engine/scheduler.py)
        self._versions = VersionVerbs(self)  # the life of definition versions
        # Outbound events (engine/publishing.py): read now, so a bad file stops the start.
        self.sinks_config = sinks_config(self)
        # Made now (they connect on first use): a secret's variable unset stops the
        # construction, before anything started.
        self._sinks = make_sinks(self, self.sinks_config) if self.sinks_config else []
        self.publisher: Publisher | None = None
        # Whether commits copy their records into the outbox: read by every turn.
        self.outbox = self.sinks_config is not None
        self.deliveries = SinkDeliveries(lambda: self.store, lambda: self.publisher)
        if self.sinks_config is not None:
            # Routing's notices addressed to `sink:<name>` go out through those event sinks.
            from orchestrion.engine.notice_sinks import SinkNotices  # only with event sinks

            self.notices.sinks.append(SinkNotices(self))

    # ------------------------------------------------------------------ lifecycle

    @property
    def drives(self) -> bool:
        """False for the API in scale-out mode: executions run in the orchestrators."""
        return self._drives

    @property
    def accepting(self) -> bool:
        """Whether the engine takes new work: started, and not shutting down."""
        return self._accepting

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("engine not started")
        return self._store

    def use_governance(self, governance: Governance) -> None:
        """Enforce ``governance`` from now on (the service makes its engine untrusted)."""
        self.governance = governance
        self._resources.controls = enforce.controls_of(governance)
        self._definitions.clear()  # compiled again under the new definition limits

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the store, start the workers, and resume every unfinished execution."""
        await lifecycle.start(self)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting work, let running attempts finish for ``grace`` s, persist, close.

        Attempts still running after the grace period are cancelled; they stay queued or
        running in the store and run again when an engine next starts on it.
        """
        await lifecycle.stop(self, grace)

    def add_listener(self, listener: RecordListener) -> None:
        """Be told of records after they are committed (progress views, event streams)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: RecordListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def check_accepting(self) -> None:
        """Raise ``ExecutionError`` unless the engine takes new work."""
        if not self._accepting:
            raise ExecutionError("the engine is not running (not started, or shutting down)")

    async def _forward(self, execution_id: str, event: Event) -> None:
        """Hand ``event`` to the orchestrators (scale-out): whichever drives or claims it."""
        cluster = self._ownership.cluster
        if cluster is None:
            raise ExecutionError(f"execution {execution_id} is driven elsewhere")
        try:
            # Bounded: a Redis that accepts connections and never answers must not hold the
            # caller (a client that gives up and starts again would make a second execution).
            async with asyncio.timeout(_HAND_OVER_SECONDS):
                await cluster.forward(None, execution_id, event)
        except TimeoutError as exc:
            raise DispatchError(
                f"the queue did not answer in {_HAND_OVER_SECONDS:g} s", kind="TimeoutError"
            ) from exc

    # ------------------------------------------------------------------ definitions

    async def submit(
        self, source: Any, *, fmt: str | None = None, created_by: str | None = None
    ) -> DefinitionRecord:
        """Validate and store a definition (path, text, dict, ``WorkflowSpec`` or loaded one).

        Without a version, identical content reuses its stored version and new content gets
        the next number; with one, (name, version) must not already hold other content.
        ``created_by`` is recorded with a new version (default: the local user, in a trusted
        process).
        """
        record, new = await self._definitions.store(source, fmt=fmt, created_by=created_by)
        self._events.subscriptions.submitted(record, new=new)
        if new:
            # A version stored before had its schedules taken in then (or by the scheduler's
            # pass since): submitting it again changes none of them.
            await self.schedules.definition_stored(record)
        return record

    def definition_changed(self, stored: DefinitionRecord | None = None) -> None:
        """A version was stored or changed status: triggers are read again (but not
        ``stored``, the record of a version stored here, which is known already)."""
        self._events.subscriptions.forget(stored)

    async def versions(self, name: str) -> tuple[list[DefinitionRecord], str | None]:
        """Every stored version of ``name`` (oldest first: who created it and when, its
        status) and the id of the active one. See ``engine/versions.py``."""
        return await self._versions.versions(name)

    async def activate(self, name: str, version: str, *, by: str | None = None) -> DefinitionRecord:
        """Make ``version`` the active version of ``name``: new triggered and scheduled runs,
        and starts that name no version, use it. Running executions keep theirs."""
        return await self._versions.activate(name, version, by)

    async def deprecate(
        self, name: str, version: str, *, by: str | None = None
    ) -> DefinitionRecord:
        """Retire ``version``: it is never the active one again (an explicit start may still
        name it). Running executions keep it."""
        return await self._versions.deprecate(name, version, by)

    @property
    def definition_limits(self) -> DefinitionLimits:
        """The size limits of definitions this engine takes in (``definition_limits``)."""
        return self._definitions.limits

    # ------------------------------------------------------------------ executions

    async def create_execution(
        self,
        definition_id: str,
        *,
        idempotency_key: str | None = None,
        inputs: dict[str, Any] | None = None,
        labels: dict[str, Any] | None = None,
    ) -> tuple[ExecutionRecord, bool]:
        """A new pending execution (or the one already made with ``idempotency_key``)."""
        return await self._starts.create_execution(definition_id, idempotency_key, inputs, labels)

    async def trigger(
        self,
        execution_id: str,
        inputs: dict[str, Any] | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        *,
        correlation_id: str | None = None,
    ) -> ExecutionRecord:
        """Start a pending execution with input params and per-node config overrides."""
        return await self._starts.trigger(execution_id, inputs, overrides, correlation_id)

    async def check_start(
        self, definition_id: str, inputs: dict[str, Any], overrides: dict[str, dict[str, Any]]
    ) -> None:
        """Refuse as its trigger would, every problem at once, a start not yet made."""
        await self._starts.check_start(definition_id, inputs, overrides)

    async def start_execution(
        self,
        definition: Any,
        inputs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        correlation_id: str | None = None,
        parent: tuple[str, str, int] | None = None,
    ) -> ExecutionRecord:
        """Submit (if needed), create and trigger in one call. Idempotent with a key.

        ``parent`` is (execution id, node id, attempt) of a ``workflow`` node starting a child.

        The execution is created already owned, with its inputs: one insert and one engine
        turn; starts asked for in the same event-loop tick share one commit (``ExecutionCreator``).
        """
        started, _made = await self._starts.start_or_find(
            definition, inputs, idempotency_key, overrides, correlation_id, parent
        )
        return started

    async def run(
        self,
        definition: Any,
        inputs: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        timeout: float | None = None,
    ) -> ExecutionResult:
        """Start an execution and wait for its final result."""
        record = await self.start_execution(definition, inputs, idempotency_key=idempotency_key)
        return await self.wait(record.id, timeout=timeout)

    async def emit(
        self, event_type: str, payload: dict[str, Any] | None = None, event_id: str | None = None
    ) -> Emitted:
        """Start every active workflow with an event trigger for ``event_type`` (filters
        permitting), the payload as inputs; an id given again starts nothing twice.
        Raises ``EventRefused`` for a bad type, id or payload (``engine/emitting.py``)."""
        return await self._events.emit(event_type, payload, event_id)

    async def webhook_trigger(
        self, workflow: str, trigger: str
    ) -> tuple[DefinitionRecord, WebhookTrigger] | None:
        """The active version of ``workflow`` and its webhook trigger ``trigger``, or None."""
        return await self._events.find_webhook(workflow, trigger)

    async def receive_webhook(
        self,
        definition: DefinitionRecord,
        trigger: WebhookTrigger,
        payload: dict[str, Any] | None,
        delivery_id: str,
        headers: dict[str, str] | None = None,
    ) -> Emitted:
        """Start ``definition`` from a verified webhook delivery (``engine/emitting.py``):
        the same delivery id again starts nothing twice."""
        return await self._events.webhook(definition, trigger, payload, delivery_id, headers or {})

    async def wait(self, execution_id: str, timeout: float | None = None) -> ExecutionResult:
        """Wait until the execution is final (or ``timeout`` s pass) and return its result."""
        return await self._outcomes.wait(execution_id, timeout)

    async def settle(self, execution_id: str, timeout: float | None = None) -> ExecutionResult:
        """Wait until the execution is final or waits for a person, whichever comes first:
        a ``run`` that reaches an approval then hands over to a later ``decide``."""
        return await self._outcomes.settle(execution_id, timeout)

    @property
    def commit_faults(self) -> CommitFaults:
        """Failed commits and parked executions (``commit_faults.py``)."""
        return self._loop.faults

    def node_progress(self, execution_id: str) -> dict[str, dict[str, int]]:
        """Live item counts of running ``map`` nodes: {node: {done, total, failed}}."""
        return dict(self._loop.progress.get(execution_id, {}))

    async def result(
        self, execution_id: str, *, record: ExecutionRecord | None = None
    ) -> ExecutionResult:
        """The execution's current state, result and node states, from the store.

        ``record``: the execution's record as the caller just read it (one read less)."""
        if record is None or record.id != execution_id:
            record = await self.store.get_execution(execution_id)
        return await self._outcomes.result(record)

    async def status(self, execution_id: str) -> tuple[ExecutionRecord, ExecutionResult]:
        """The execution's record and ``result``, from one store read (the status routes)."""
        return await self._outcomes.status(execution_id)

    async def list_executions(
        self, flt: ExecutionFilter | None = None
    ) -> tuple[list[ExecutionRecord], str | None]:
        return await self.store.list_executions(flt or ExecutionFilter())

    async def count_executions(self, flt: ExecutionFilter) -> dict[ExecutionStatus, int]:
        """How many executions match ``flt``, by status (its cursor and limit aside)."""
        return await self.store.count_executions(flt)

    async def count_executions_over_time(
        self, flt: ExecutionFilter, origin: float, bucket: float, buckets: int
    ) -> dict[int, dict[ExecutionStatus, int]]:
        """Counts by status per time bucket (see ``Store.count_executions_over_time``)."""
        return await self.store.count_executions_over_time(flt, origin, bucket, buckets)

    async def node_states(self, execution_id: str) -> dict[str, NodeState]:
        """Each node's state: the live machine's while this engine drives it, else stored."""
        return await self._outcomes.node_states(execution_id)

    # ------------------------------------------------------------------ control

    async def cancel(
        self, execution_id: str, reason: str = "cancelled by request", *, force: bool = False
    ) -> None:
        """Cancel an execution and its children (``force``: abandon a compensation too)."""
        await self._control.cancel(execution_id, reason, force)

    async def pause(self, execution_id: str) -> None:
        """Pause: running nodes finish, nothing new starts (one compensating is not paused:
        the pause is recorded in its journal and its error's ``pause_requested``)."""
        await self._control.pause(execution_id)

    async def resume(self, execution_id: str) -> None:
        await self._control.resume(execution_id)

    async def decide(
        self,
        execution_id: str,
        node_id: str,
        *,
        approved: bool,
        by: str | None = None,
        comment: str | None = None,
        decider: Decider | None = None,
    ) -> None:
        """Approve or reject a node waiting for approval or review; the decision is recorded.

        An approved ``review`` (an llm output below the confidence threshold) completes the
        node with the output that waited, plus the decision under ``review``.

        ``decider`` is the authenticated API caller: it must be among an approval's
        ``approvers`` (``DecisionRefused`` otherwise) and is recorded as ``decided_by``, in
        place of ``by``. Without it the decision is the database owner's (``by`` recorded as
        given); see ``engine/deciders.py``.
        """
        await self._control.decide(
            execution_id, node_id, approved=approved, by=by, comment=comment, decider=decider
        )

    async def retry(self, execution_id: str, from_node: str | None = None) -> None:
        """Run a finished execution again; completed nodes keep their outputs.

        Without ``from_node``: a failed or cancelled execution goes on from the nodes that did
        not complete. With it: that node and everything downstream of it run again, whatever
        their state (re-run of a node after a fix or a data change), in any final execution.
        """
        await self._control.retry(execution_id, from_node)

    async def adopt_lineage(self, execution_id: str) -> str:
        """Drive here the ancestors and descendants of ``execution_id`` nobody alive drives
        (the root's id): a decided child's parent must be driven to take its result and go
        on, and a child still under way (a delay beside the approval) too, or the decision
        would wait on it forever."""
        return await self._control.adopt_lineage(execution_id)

    async def pending_decisions(self, execution_id: str) -> list[lineage.PendingDecision]:
        """Nodes waiting for a person in the execution or in the children it waits on."""
        return await lineage.pending_decisions(self, execution_id)

    # ------------------------------------------------------------------ helpers for callers

    def live_machine(self, execution_id: str) -> ExecutionMachine | None:
        """The state machine of an execution this engine drives right now, if any."""
        live = self._loop.live.get(execution_id)
        return live.machine if live is not None else None

    def live_record(self, execution_id: str) -> ExecutionRecord | None:
        """The record of an execution this engine drives right now, if any (not a copy)."""
        live = self._loop.live.get(execution_id)
        return live.record if live is not None else None

    def post(self, execution_id: str, event: Event) -> None:
        """Hand an event to the engine loop (from handlers' helpers and timers)."""
        self._loop.post(execution_id, event)

    # ------------------------------------------------------------------ scale-out hooks

    def is_live(self, execution_id: str) -> bool:
        """Whether this engine drives the execution right now."""
        return execution_id in self._loop.live

    def deliver(self, execution_id: str, event: Event) -> asyncio.Future[None]:
        """Post ``event``; the future resolves once the turn that applied it is committed
        (and fails if that commit failed), so a stream entry is acknowledged only then."""
        return self._loop.deliver(execution_id, event)

    async def adopt(self, record: ExecutionRecord) -> bool:
        """Claim an unfinished (or, for a retry, finished) execution nobody alive drives, load
        it and carry on from the store. False when another engine claimed it first."""
        return await self._recovery.adopt(record)
