"""The engine: the state machine driven against a store and a dispatcher.

One asyncio task (the loop) owns every live ``ExecutionMachine``. Everything that can change an
execution (a trigger, a worker's result, a timer, a cancel) is posted to its inbox. Each turn
the loop takes everything posted so far, applies it to the machines, commits all resulting
records in ONE store transaction (group commit), and only then acts on the commands:
dispatches attempts, arms timers, cancels attempts, resolves waiters. A crash at any point
leaves the store at a committed turn, from which ``start()`` resumes.

Embedded mode is this engine with ``SQLiteStore`` and ``LocalDispatcher``; scale-out runs the
same loop in the orchestrator process with other adapters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from orchestrion.core.events import (
    CancelNode,
    CancelRequested,
    Command,
    Dispatch,
    ErrorInfo,
    Event,
    ExecutionFinished,
    ExecutionTimedOut,
    NodeFailed,
    NodeSkipped,
    NodeSucceeded,
    PauseRequested,
    Record,
    ResumeRequested,
    RetryRequested,
    RunCompensation,
    ScheduleTimer,
    Started,
    TimerFired,
    WaitResolved,
)
from orchestrion.core.machine import ExecutionMachine, NodeRun, Step
from orchestrion.core.result import ExecutionResult
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.definition.limits import DefinitionLimits, check_stored, truncated
from orchestrion.definition.model import WorkflowSpec
from orchestrion.dispatch.base import Dispatcher, TaskMessage, cluster_of
from orchestrion.engine import lineage
from orchestrion.engine.children import ChildExecutions
from orchestrion.engine.compiled import CompiledWorkflow
from orchestrion.engine.control_requests import ControlRequests
from orchestrion.engine.creation import ExecutionCreator
from orchestrion.engine.deciders import Decider, check_decider
from orchestrion.engine.gc_tuning import (
    LARGE_DEFINITION_NODES,
    freeze_large,
    freeze_startup_objects,
)
from orchestrion.engine.ids import new_event_id
from orchestrion.engine.ownership import new_owner_id, owner_is_dead
from orchestrion.engine.trigger_checks import check_inputs, check_overrides
from orchestrion.engine.waiting import WAIT_EVENT_TYPES, waited_seconds
from orchestrion.errors import (
    DefinitionError,
    ExecutionError,
    ExecutionNotFound,
    InvalidTransition,
    OrchestrionError,
    StoreError,
)
from orchestrion.execution import enforce
from orchestrion.governance.log_masking import set_log_masker
from orchestrion.governance.policy import definition_limits
from orchestrion.governance.runtime import Governance
from orchestrion.governance.trust import Trust, process_trust, stricter
from orchestrion.handlers.base import Resources
from orchestrion.handlers.keys import CHILD_STARTER_KEY, CHILD_WAITER_KEY, PROGRESS_KEY
from orchestrion.handlers.registry import HandlerRegistry, default_registry
from orchestrion.settings import Settings, load_secrets, load_settings
from orchestrion.store.audit_log import AuditLog
from orchestrion.store.base import (
    CommitBatch,
    DefinitionRecord,
    EventRecord,
    ExecutionFilter,
    ExecutionRecord,
    NodeRunRecord,
    Store,
)

if TYPE_CHECKING:
    import httpx

__all__ = ["Engine", "RecordListener"]

logger = logging.getLogger(__name__)

_DECIDABLE = lineage.DECIDABLE
# Longest run of back-to-back turns (seconds) before the loop lets other tasks in.
_TURNS_BUDGET = 0.005
# Longest a turn spends running attempts inline (seconds) before it commits what it has.
_INLINE_BUDGET = 0.005

RecordListener = Callable[[str, list[Record]], None]
"""Called after each commit with (execution_id, records just made durable)."""


@dataclass(slots=True)
class _Live:
    """An execution the loop is driving."""

    record: ExecutionRecord
    compiled: CompiledWorkflow
    machine: ExecutionMachine
    outputs: dict[str, Any]
    done: asyncio.Future[ExecutionStatus]
    timers: dict[tuple[str, int, str], asyncio.TimerHandle] = field(default_factory=dict)
    deadline: asyncio.TimerHandle | None = None
    queued_event: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class _Posted:
    execution_id: str
    event: Event
    cause: str | None
    ack: asyncio.Future[None] | None = None
    # From a stream (``deliver``): when the execution is not driven here by the time the
    # turn runs (a failed commit dropped it), the entry must stay unacknowledged.
    redeliverable: bool = False


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
    ) -> None:
        self.settings = settings or load_settings()
        # The policy in force: trusted (one's own definitions) unless the caller says not.
        self.governance = governance or Governance.from_settings(self.settings)
        # The audit trail: commits carry its signer, so transitions are audited with them.
        self.audit = AuditLog(self.governance, lambda: self.store)
        self._creator = ExecutionCreator(lambda: self.store)
        self.database_url = database_url or self.settings.database_url
        self._store = store
        self._dispatcher = dispatcher
        self.registry = registry or default_registry()
        self.concurrency = concurrency or self.settings.concurrency
        self._rng = rng or random.Random()
        # drive=False (the API in scale-out mode): never run executions here; hand starts and
        # control requests to the orchestrators through the dispatcher's ``forward``.
        self._drives = drive
        self._resume = resume and drive
        self._compiled: dict[str, CompiledWorkflow] = {}
        self._definitions: dict[str, DefinitionRecord] = {}
        self._live: dict[str, _Live] = {}
        self._inbox: list[_Posted] = []
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._listeners: list[RecordListener] = []
        self._background: set[asyncio.Future[None]] = set()
        self._resources = Resources()
        enforce.install(self.governance, self._resources.extra)
        self._accepting = False
        self._started = False
        self.owner = new_owner_id()
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._children = ChildExecutions(self)
        self._requests = ControlRequests(self)
        self._progress: dict[str, dict[str, dict[str, int]]] = {}  # live, not durable

    # ------------------------------------------------------------------ lifecycle

    @property
    def drives(self) -> bool:
        """False for the API in scale-out mode: executions run in the orchestrators."""
        return self._drives

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("engine not started")
        return self._store

    def use_governance(self, governance: Governance) -> None:
        """Enforce ``governance`` from now on (the service makes its engine untrusted)."""
        self.governance = governance
        enforce.install(governance, self._resources.extra)
        self._compiled.clear()  # compiled again under the new definition limits

    async def __aenter__(self) -> Engine:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Open the store, start the workers, and resume every unfinished execution."""
        if self._started:
            return
        if self.governance.masker is not None:
            # Log lines are masked process-wide from here on, whoever configured logging.
            set_log_masker(self.governance.masker)
        if self._store is None:
            from orchestrion.store.factory import open_store

            self._store = open_store(self.database_url)
        # Classified values are sealed before the adapter sees them (store/encrypted.py).
        self._store = self.governance.protect(self._store)
        self.governance.warn_missing_keys()
        await self._store.open()
        try:
            await self.audit.start()  # the trail's anchor: a checkpoint now, then periodically
        except BaseException:
            await self._store.close()
            raise
        if self._dispatcher is None:
            self._dispatcher = self._default_dispatcher()
        cluster = cluster_of(self._dispatcher)
        if cluster is not None:  # scale-out: events from streams are routed through this engine
            from orchestrion.engine.routing import EventRouter

            cluster.bind_router(EventRouter(self, cluster))
            if cluster.record_listener not in self._listeners:
                self.add_listener(cluster.record_listener)  # tells others what was committed
        try:
            await self._dispatcher.start(self._post)
        except BaseException:
            await self._dispatcher.close()  # a queue that cannot be reached: start again later
            await self.audit.stop()
            await self._store.close()
            raise
        self._started = True
        self._accepting = True
        if self._resume:
            try:
                await self._resume_unfinished()
            except BaseException:
                # Half started is worse than not started: a dispatcher left reading with no
                # loop to apply what it reads would swallow the events of the executions
                # it claimed. Give everything back; the caller may start afresh.
                await self._abort_start()
                raise
        if self.settings.gc_freeze:
            freeze_startup_objects()  # imports and set-up are done: see gc_tuning
        self._loop_task = asyncio.create_task(self._run_loop(), name="orchestrion-engine")
        self._heartbeat_task = asyncio.create_task(self._heartbeat(), name="orchestrion-leases")
        if self._drives:
            # Other processes on this database ask through the journal: a second terminal in
            # embedded mode, and in scale-out a CLI given only the database (no Redis).
            await self._requests.start()

    async def _abort_start(self) -> None:
        self._accepting = False
        for live in self._live.values():
            self._disarm(live)
        self._live.clear()
        with contextlib.suppress(Exception):
            await self.store.release_executions(self.owner)  # all it claimed
        with contextlib.suppress(Exception):
            await self._dispatcher.close()  # type: ignore[union-attr]
        with contextlib.suppress(Exception):
            await self.audit.stop()
        with contextlib.suppress(Exception):
            await self.store.close()
        self._started = False

    def _default_dispatcher(self) -> Dispatcher:
        """In-process workers; with ``redis_url``, Redis Streams (the local dispatcher then
        runs only what needs this engine: child executions)."""
        sealer = self.governance.wire_sealer(self.store)
        if self.settings.redis_url and not self._drives:
            from orchestrion.cluster.dispatcher import RedisHandoff

            return RedisHandoff(self.settings.redis_url, self.settings, sealer=sealer)
        local = self._local_dispatcher()
        if not self.settings.redis_url:
            return local
        from orchestrion.cluster.dispatcher import RedisDispatcher

        return RedisDispatcher(
            self.settings.redis_url,
            self.settings,
            local=local,
            canonical=self.registry.canonical_name,
            sealer=sealer,
        )

    def _local_dispatcher(self) -> Dispatcher:
        from orchestrion.execution.executor import NodeExecutor
        from orchestrion.execution.local import LocalDispatcher

        def http_client() -> httpx.AsyncClient:
            # Imported with the first http or llm attempt, like the http handler itself.
            from orchestrion.handlers.http import build_http_client

            return build_http_client(
                timeout=self.settings.http_timeout,
                max_connections=self.settings.http_max_connections,
                # Connections go only to addresses the policy in force checked (DNS
                # rebinding); read per connection, so a later ``use_governance`` is followed.
                url_policy=lambda: self.governance.url_policy,
            )

        self._resources.http_factory = http_client
        self._resources.extra.setdefault("registry", self.registry)  # map runs inner handlers
        self._resources.extra.setdefault(CHILD_STARTER_KEY, self._children.start)
        self._resources.extra.setdefault(CHILD_WAITER_KEY, self._children.await_child)
        self._resources.extra.setdefault(PROGRESS_KEY, self._report_progress)
        executor = NodeExecutor(self.registry, self._resources, load_secrets(self.settings))
        return LocalDispatcher(executor, self.concurrency)

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting work, let running attempts finish for ``grace`` s, persist, close.

        Attempts still running after the grace period are cancelled; they stay queued or
        running in the store and run again when an engine next starts on it.
        """
        if not self._started:
            return
        self._accepting = False
        grace = self.settings.shutdown_grace if grace is None else grace
        await self._requests.stop()
        await self._children.close()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            await asyncio.gather(self._heartbeat_task, return_exceptions=True)
            self._heartbeat_task = None
        if self._dispatcher is not None:
            await self._dispatcher.close(grace)
        await self._drain()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        unfinished = [eid for eid, live in self._live.items() if not live.machine.finished]
        if unfinished:
            # Hand them back at once: the next engine on this database resumes them.
            await self.store.release_executions(self.owner, unfinished)
        for live in self._live.values():
            self._disarm(live)
            if not live.done.done():
                live.done.cancel()
        self._live.clear()
        await self._resources.aclose()
        await self.audit.stop()  # the last checkpoint, while the store is open
        await self.store.close()
        self._started = False

    async def _drain(self) -> None:
        """Wait until everything posted so far, and the turn under way, is committed."""
        if self._loop_task is None or self._loop_task.done():
            return
        while True:
            ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._inbox.append(_Posted("", Started(0.0), None, ack))  # a no-op marker
            self._wake.set()
            await ack
            if not self._inbox:
                return

    def add_listener(self, listener: RecordListener) -> None:
        """Be told of records after they are committed (progress views, event streams)."""
        self._listeners.append(listener)

    def remove_listener(self, listener: RecordListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    # ------------------------------------------------------------------ definitions

    async def submit(self, source: Any, *, fmt: str | None = None) -> DefinitionRecord:
        """Validate and store a definition (path, text, dict, ``WorkflowSpec`` or loaded one).

        Without a version, identical content reuses its stored version and new content gets
        the next number; with one, (name, version) must not already hold other content.
        """
        from orchestrion.definition.loader import LoadedDefinition, load_definition

        context = enforce.validation_context(self.governance)
        limits = self.definition_limits
        if isinstance(source, LoadedDefinition):
            loaded = source
        elif isinstance(source, WorkflowSpec):
            loaded = await asyncio.to_thread(
                load_definition,
                source.model_dump(mode="json", exclude_defaults=True),
                registry=self.registry,
                context=context,
                limits=limits,
            )
            loaded.source_format = "python"
        else:
            # Off the event loop: a large definition takes a while to parse and check.
            loaded = await asyncio.to_thread(
                load_definition,
                source,
                fmt=fmt,
                registry=self.registry,
                context=context,
                limits=limits,
            )
        self._check_code_policy(loaded.spec)
        spec = loaded.spec
        content_hash = await _off_loop(spec, self.settings.gc_freeze, _content_hash, spec)
        version = spec.version
        if version is None:
            existing = await self.store.find_definition_by_hash(spec.name, content_hash)
            if existing is not None:
                return existing
            version = await self.store.next_version(spec.name)
            spec = spec.model_copy(update={"version": version})
        dumped = await _off_loop(spec, self.settings.gc_freeze, spec.model_dump, mode="json")
        record = DefinitionRecord(
            id=str(uuid.uuid4()),
            name=spec.name,
            version=version,
            spec=dumped,
            content_hash=content_hash,
            source_format=loaded.source_format,
            dialect=loaded.dialect,
            created_at=time.time(),
            source=loaded.source_text,
            trust=process_trust(self.governance),
        )
        stored = await self.store.put_definition(record)
        if stored.id == record.id:
            compiled = await _off_loop(
                spec, self.settings.gc_freeze, CompiledWorkflow.build, stored.id, spec
            )
            self._cache_compiled(stored.id, compiled)
        self._definitions[stored.id] = stored
        return stored

    @property
    def definition_limits(self) -> DefinitionLimits:
        """The size limits of definitions this engine takes in (``definition_limits``)."""
        return definition_limits(self.governance.loaded, trusted=self.governance.trusted)

    def _cache_compiled(self, definition_id: str, compiled: CompiledWorkflow) -> None:
        self._compiled[definition_id] = compiled

    def _check_limits(self, record: DefinitionRecord) -> None:
        # Stored under other limits, perhaps: a re-run or a child run obeys today's.
        source = f"stored definition '{record.name}' v{record.version}"
        trusted = self.governance.trusted and Trust.of(record.trust).trusted
        limits = definition_limits(self.governance.loaded, trusted=trusted)
        check_stored(record.spec, limits, source=source)

    async def _compiled_for(self, definition_id: str) -> CompiledWorkflow:
        compiled = self._compiled.get(definition_id)
        if compiled is None:
            record = await self._definition(definition_id)
            self._check_limits(record)
            compiled = await _off_loop(
                record.spec, self.settings.gc_freeze, _compile_stored, definition_id, record.spec
            )
            self._cache_compiled(definition_id, compiled)
        return compiled

    async def _definition(self, definition_id: str) -> DefinitionRecord:
        record = self._definitions.get(definition_id)
        if record is None:
            record = await self.store.get_definition(definition_id)
            self._definitions[definition_id] = record
        return record

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
        definition = await self._definition(definition_id)
        self._check_limits(definition)
        record = ExecutionRecord(
            id=str(uuid.uuid4()),
            definition_id=definition_id,
            status=ExecutionStatus.PENDING,
            created_at=time.time(),
            inputs=dict(inputs or {}),
            idempotency_key=idempotency_key,
            labels=dict(labels or {}),
            trust=stricter(process_trust(self.governance), definition.trust),
        )
        return await self.store.create_execution(record)

    async def trigger(
        self,
        execution_id: str,
        inputs: dict[str, Any] | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
        *,
        correlation_id: str | None = None,
    ) -> ExecutionRecord:
        """Start a pending execution with input params and per-node config overrides."""
        self._check_accepting()
        record = await self.store.get_execution(execution_id)
        if record.status is not ExecutionStatus.PENDING or execution_id in self._live:
            raise InvalidTransition(
                f"execution {execution_id} was already triggered (status {record.status.value})"
            )
        compiled = await self._compiled_for(record.definition_id)
        merged = {**record.inputs, **(inputs or {})}
        record.inputs = check_inputs(compiled.plan.spec, merged)
        record.overrides = self._checked_overrides(compiled, overrides)
        trust = stricter(record.trust, process_trust(self.governance))
        self._check_override_flow(compiled, record.overrides, trust)
        self._check_code_policy(compiled.plan.spec, trust, record.overrides)
        if self._drives:
            await self._claim(record, "trigger", expected=None)
        if not trust.trusted and Trust.of(record.trust).trusted:
            # Inputs and overrides from an untrusted caller: never trusted again.
            await self.store.distrust_execution(execution_id)
            record.trust = trust
        record.correlation_id = correlation_id or record.correlation_id or execution_id
        await self.store.update_execution_inputs(
            execution_id, record.inputs, record.overrides, record.correlation_id
        )
        await self._begin(record, compiled)
        return record

    def _checked_overrides(
        self, compiled: CompiledWorkflow, overrides: dict[str, dict[str, Any]] | None
    ) -> dict[str, dict[str, Any]]:
        """Overrides naming known nodes, each patched config fitting its handler's schema."""
        return check_overrides(
            compiled,
            overrides or {},
            self.definition_limits.max_problems,
            registry=self.registry,
            context=enforce.validation_context(self.governance),
        )

    def _check_override_flow(
        self,
        compiled: CompiledWorkflow,
        overrides: dict[str, dict[str, Any]],
        trust: Trust | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Refuse overrides that move a secret out of a request field or pair a credential
        with a node's own endpoint (``definition/secret_flow.py``), naming node and field."""
        if not overrides:
            return overrides
        from orchestrion.definition.secret_flow import override_issues

        nodes = ((n.id, n.handler, n.config, n.when) for n in compiled.plan.spec.dag.nodes)
        routing = enforce.routing_of(self.governance)
        if trust is not None and not trust.trusted:
            routing = routing.with_trust(False)
        issues = override_issues(nodes, overrides, routing, self.registry)
        if issues:
            raise DefinitionError(issues, source="node overrides")
        return overrides

    def _check_code_policy(
        self,
        spec: WorkflowSpec,
        trust: Trust | None = None,
        overrides: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        """Refuse python functions outside the allowlist (untrusted work or process only)."""
        governance = self.governance
        if trust is not None and not trust.trusted:
            governance = governance.untrusted()
        allowlist = governance.python_allowlist
        if allowlist is None:
            return
        from orchestrion.execution.code_policy import code_issues

        issues = code_issues(spec, self.registry, allowlist, overrides)
        if issues:
            limit = self.definition_limits.max_problems
            raise DefinitionError(truncated(issues, limit), source="governance policy")

    async def _begin(self, record: ExecutionRecord, compiled: CompiledWorkflow) -> None:
        """Make ``record`` live and commit its start (the execution is owned by us); or, when
        this engine does not drive, hand the start to whichever orchestrator claims it."""
        if not self._drives:
            try:
                await self._forward(record.id, Started(time.time()))
            except Exception as exc:
                from orchestrion.cluster.dispatcher import queue_unavailable

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
        live = self._make_live(record, compiled, {})
        self._live[record.id] = live
        await self._post_and_wait(record.id, Started(time.time()))
        self._arm_deadline(live, time.time())

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

        The execution is created already owned, with its inputs, so starting costs one insert
        and one engine turn; the starts asked for in the same event-loop tick share one commit
        (``ExecutionCreator``).
        """
        self._check_accepting()
        # Content handed over is the caller's; a stored definition keeps its own level.
        trust = process_trust(self.governance)
        if isinstance(definition, DefinitionRecord):
            definition_id = definition.id
            # The stored row's level, not the one the caller's object claims.
            trust = stricter(trust, definition.trust, (await self._definition(definition_id)).trust)
        else:
            definition_id = (await self.submit(definition)).id
        if parent is not None:
            trust = stricter(trust, await self._trust_of(parent[0]))
        compiled = await self._compiled_for(definition_id)
        now = time.time()
        execution_id = str(uuid.uuid4())
        record = ExecutionRecord(
            id=execution_id,
            definition_id=definition_id,
            status=ExecutionStatus.PENDING,
            created_at=now,
            inputs=check_inputs(compiled.plan.spec, dict(inputs or {})),
            overrides=self._check_override_flow(
                compiled,
                self._checked_overrides(compiled, overrides),
                trust,
            ),
            idempotency_key=idempotency_key,
            correlation_id=correlation_id or execution_id,
            owner=self.owner if self._drives else None,
            lease_until=now + self.settings.lease_seconds if self._drives else None,
            trust=trust,
        )
        if parent is not None:
            record.parent_execution_id, record.parent_node_id = parent[0], parent[1]
            record.labels = {"parent_attempt": parent[2]}
        # A caller that gives up while the batch is written gets its execution made all the
        # same, so it is begun all the same, as a start cancelled a moment later would be.
        stored, created = await self._creator.create(
            record, abandoned=functools.partial(self._begin_abandoned, compiled)
        )
        if not created:
            if (
                stored.status is not ExecutionStatus.PENDING
                or stored.owner is not None  # a start made it, and is beginning it now
                or stored.id in self._live
            ):
                return stored
            # Made pending by create_execution with this key, never triggered: trigger it.
            return await self.trigger(stored.id, inputs, overrides, correlation_id=correlation_id)
        await self._begin(stored, compiled)
        return stored

    async def _trust_of(self, execution_id: str) -> Trust:
        live = self._live.get(execution_id)
        record = live.record if live is not None else await self.store.get_execution(execution_id)
        return Trust.of(record.trust)

    def _begin_abandoned(
        self, compiled: CompiledWorkflow, stored: ExecutionRecord, created: bool
    ) -> None:
        if created and self._accepting:
            task = asyncio.ensure_future(self._begin(stored, compiled))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

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

    async def wait(self, execution_id: str, timeout: float | None = None) -> ExecutionResult:
        """Wait until the execution is final (or ``timeout`` s pass) and return its result."""
        live = self._live.get(execution_id)
        async with asyncio.timeout(timeout):
            if live is not None:
                await asyncio.shield(live.done)
            else:
                while True:
                    record = await self.store.get_execution(execution_id)
                    if record.status in FINAL_EXECUTION_STATES:
                        return await self._result(record)  # final: no need to read it again
                    live = self._live.get(execution_id)
                    if live is not None:
                        await asyncio.shield(live.done)
                        break
                    await asyncio.sleep(0.2)
        return await self.result(execution_id)

    async def settle(self, execution_id: str, timeout: float | None = None) -> ExecutionResult:
        """Wait until the execution is final or waits for a person, whichever comes first.

        A ``run`` that reaches an approval can then hand over: the decision comes later,
        through ``decide`` (API, CLI), in this process or another one.
        """
        async with asyncio.timeout(timeout):
            while True:
                live = self._live.get(execution_id)
                if live is None:
                    # Driven by another process, or final: read the store until it is final
                    # or waits for a person.
                    record = await self.store.get_execution(execution_id)
                    if record.status in FINAL_EXECUTION_STATES or (
                        record.status is ExecutionStatus.WAITING
                        and execution_id not in self._live
                        and await lineage.pending_decisions(self, execution_id)
                    ):
                        return await self._result(record)
                    if execution_id not in self._live:
                        await asyncio.sleep(0.2)
                    continue
                # Hand over only once nothing goes on without a person: a sibling still
                # running (a child, an attempt) would otherwise be left half done.
                if live.machine.finished or (
                    live.machine.status is ExecutionStatus.WAITING
                    and self._waits_for_person(execution_id)
                ):
                    # Events already posted (a recovered parent's wake of its child node)
                    # may set it going again: decide on what they leave.
                    await self._drain()
                    if live.machine.finished or (
                        live.machine.status is ExecutionStatus.WAITING
                        and self._waits_for_person(execution_id)
                    ):
                        break
                    continue
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(live.done), 0.05)
        await self._drain()  # the waiting record is committed before anyone reads it
        return await self.result(execution_id)

    def _waits_for_person(self, execution_id: str) -> bool:
        """Whether the execution, or a child it waits on driven here, waits for a decision."""
        for live in self._live.values():
            if not any(
                run.state is NodeState.WAITING and run.wait_reason in _DECIDABLE
                for run in live.machine.nodes
            ):
                continue
            current: _Live | None = live
            for _ in range(32):  # up the parent chain, as far as it is driven here
                if current is None:
                    break
                if current.record.id == execution_id:
                    return True
                parent = current.record.parent_execution_id
                current = self._live.get(parent) if parent is not None else None
        return False

    def _report_progress(self, execution_id: str, node_id: str, counts: dict[str, int]) -> None:
        if execution_id in self._live:
            self._progress.setdefault(execution_id, {})[node_id] = counts

    def node_progress(self, execution_id: str) -> dict[str, dict[str, int]]:
        """Live item counts of running ``map`` nodes: {node: {done, total, failed}}."""
        return dict(self._progress.get(execution_id, {}))

    async def result(self, execution_id: str) -> ExecutionResult:
        """The execution's current state, result and node states, from the store."""
        return await self._result(await self.store.get_execution(execution_id))

    async def _result(self, record: ExecutionRecord) -> ExecutionResult:
        execution_id = record.id
        definition = await self._definition(record.definition_id)
        compiled = await self._compiled_for(record.definition_id)
        runs = await self.store.get_node_runs(execution_id)
        waited = await self._waited(execution_id, runs)
        return ExecutionResult.build(
            record, definition.name, definition.version, runs, compiled.plan.ids, waited
        )

    async def _waited(self, execution_id: str, runs: list[NodeRunRecord]) -> dict[str, float]:
        """Seconds each node's attempt waited, from its ``node.waiting``/``node.woken`` records."""
        events: list[EventRecord] = []
        after, size = 0, 1000
        while True:
            page = await self.store.list_events(
                execution_id, after_seq=after, limit=size, types=WAIT_EVENT_TYPES
            )
            events.extend(page)
            if len(page) < size:
                break
            after = page[-1].seq
        return waited_seconds(events, {run.node_id: run for run in runs}, time.time())

    async def list_executions(
        self, flt: ExecutionFilter | None = None
    ) -> tuple[list[ExecutionRecord], str | None]:
        return await self.store.list_executions(flt or ExecutionFilter())

    async def cancel(self, execution_id: str, reason: str = "cancelled by request") -> None:
        """Cancel an execution and the children it waits on, wherever they run."""
        target = await self._control_target(execution_id, "cancel")
        if await self._requested(target, "cancel", reason=reason):
            return
        await self._apply(target, CancelRequested(time.time(), reason))
        if isinstance(target, _Live):
            await self._children.stopped()  # its children are cancelled before this returns

    async def adopt_lineage(self, execution_id: str) -> str:
        """Drive here the ancestors and descendants of ``execution_id`` nobody alive drives;
        the root's id.

        Deciding a child's approval completes the child; its parent, released by the run that
        handed over, must be driven by someone to take that result and go on. And a child
        still under way when the run handed over (a delay beside the approval) is driven too,
        or the decision would wait on it forever.
        """
        chain = await lineage.ancestors(self, execution_id)
        root = chain[-1] if chain else execution_id
        for member in [*reversed(chain), *await lineage.descendants(self, root)]:
            if member == execution_id or member in self._live:
                continue  # the execution itself is loaded by the verb that follows
            record = await self.store.get_execution(member)
            if record.status in FINAL_EXECUTION_STATES:
                continue
            if record.owner == self.owner or owner_is_dead(
                record.owner, record.lease_until, time.time()
            ):
                await self.adopt(record)
        return root

    async def pending_decisions(self, execution_id: str) -> list[lineage.PendingDecision]:
        """Nodes waiting for a person in the execution or in the children it waits on."""
        return await lineage.pending_decisions(self, execution_id)

    async def pause(self, execution_id: str) -> None:
        target = await self._control_target(execution_id, "pause")
        if await self._requested(target, "pause"):
            return
        await self._apply(target, PauseRequested(time.time()))

    async def resume(self, execution_id: str) -> None:
        target = await self._control_target(execution_id, "resume")
        status = target.machine.status if isinstance(target, _Live) else target.status
        if status is not ExecutionStatus.PAUSED:
            raise InvalidTransition(
                f"execution {execution_id} is not paused (status {status.value})"
            )
        if await self._requested(target, "resume"):
            return
        await self._apply(target, ResumeRequested(time.time()))

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
        target = await self._control_target(execution_id, "approve" if approved else "reject")
        record = target.record if isinstance(target, _Live) else target
        compiled = await self._compiled_for(record.definition_id)
        index = compiled.plan.index.get(node_id)
        if index is None:
            raise ExecutionNotFound(f"execution {execution_id} has no node '{node_id}'")
        if isinstance(target, _Live):
            run = target.machine.nodes[index]
            state, reason, attempt = run.state, run.wait_reason, run.attempt
        else:
            stored = {r.node_id: r for r in await self.store.get_node_runs(execution_id)}
            found = stored.get(node_id)
            state = found.state if found is not None else NodeState.PENDING
            reason = found.wait_reason if found is not None else None
            attempt = found.attempt if found is not None else 0
        if state is not NodeState.WAITING or reason not in _DECIDABLE:
            raise InvalidTransition(
                f"node '{node_id}' of execution {execution_id} is not waiting for a decision "
                f"(it is {state.value})"
            )
        config = {**compiled.plan.nodes[index].config, **record.overrides.get(node_id, {})}
        decision: dict[str, Any] = {
            "approved": approved,
            "decided_by": by,
            "comment": comment,
            "decided_at": time.time(),
        }
        if decider is not None:
            approvers = config.get("approvers") if reason == "approval" else None
            check_decider(node_id, approvers, decider, self.settings.approver_groups)
            if decider.key_id is not None:  # an open API knows no one: the name given stays
                by = decision["decided_by"] = decider.label
            decision["decided_by_key"] = decider.key_id
            decision["decided_by_role"] = decider.role
        verb = "approve" if approved else "reject"
        # Driven by another embedded process: it decides, as asked (the caller checked here).
        if await self._requested(target, verb, node=node_id, by=by, comment=comment):
            return
        error = None
        if not approved and config.get("on_reject") != "continue":
            who = f" by {by}" if by else ""
            why = f": {comment}" if comment else ""
            error = ErrorInfo("rejected", f"rejected{who}{why}", transient=False)
        output: Any = decision
        if reason == "review" and error is None:
            # An approved review completes the node with the output that waited for it. The
            # machine may say "waiting" a moment before that record is committed: drain first.
            if isinstance(target, _Live):
                await self._drain()
            waited = await self._wait_data(execution_id, node_id, attempt)
            output = {**(waited.get("output") or {}), "review": decision}
        event = WaitResolved(node_id, attempt, time.time(), output=output, error=error)
        await self._apply(target, event)

    async def _wait_data(self, execution_id: str, node_id: str, attempt: int) -> dict[str, Any]:
        """The data of the node's latest ``node.waiting`` record for ``attempt``."""
        found: dict[str, Any] = {}
        after, size = 0, 1000
        while True:
            page = await self.store.list_events(
                execution_id, after_seq=after, limit=size, types=["node.waiting"]
            )
            for event in page:
                if event.node_id == node_id and event.attempt == attempt:
                    found = event.data or {}
            if len(page) < size:
                return found
            after = page[-1].seq

    async def _apply(self, target: _Live | ExecutionRecord, event: Event) -> None:
        """Apply a control event here and wait for its commit, or send it to the driver."""
        if isinstance(target, _Live):
            await self._post_and_wait(target.record.id, event)
        else:
            await self._forward(target.id, event)

    async def _forward(self, execution_id: str, event: Event) -> None:
        forward = getattr(self._dispatcher, "forward", None)
        if forward is None:
            raise ExecutionError(f"execution {execution_id} is driven elsewhere")
        try:
            # Bounded: a Redis that accepts connections and never answers must not hold the
            # caller (a client that gives up and starts again would make a second execution).
            async with asyncio.timeout(_HAND_OVER_SECONDS):
                await forward(None, execution_id, event)
        except TimeoutError as exc:
            from redis.exceptions import TimeoutError as QueueTimeout

            raise QueueTimeout(f"the queue did not answer in {_HAND_OVER_SECONDS:g} s") from exc

    def _held_elsewhere(self, record: ExecutionRecord) -> bool:
        if record.owner in (None, self.owner):
            return False
        live_owners = getattr(self._dispatcher, "live_owners", None)
        alive = live_owners() if live_owners is not None else None
        if alive is not None and record.owner not in alive:
            return False
        return not owner_is_dead(record.owner, record.lease_until, time.time())

    def _forwards(self, record: ExecutionRecord) -> bool:
        """Whether control of ``record`` goes to another process instead of here: over the
        dispatcher (scale-out), or as a request in the journal (embedded, ``_requested``)."""
        if not hasattr(self._dispatcher, "forward"):
            return self._drives and self._held_elsewhere(record)
        return not self._drives or self._held_elsewhere(record)

    async def _requested(
        self, target: _Live | ExecutionRecord, verb: str, **args: str | None
    ) -> bool:
        """Embedded, with ``target`` run by another process: ask it through the journal and
        wait until it acted. False when the verb is for this process to carry out."""
        if isinstance(target, _Live) or hasattr(self._dispatcher, "forward"):
            return False
        await self._requests.send(target, verb, **args)
        return True

    async def retry(self, execution_id: str, from_node: str | None = None) -> None:
        """Run a finished execution again; completed nodes keep their outputs.

        Without ``from_node``: a failed or cancelled execution goes on from the nodes that did
        not complete. With it: that node and everything downstream of it run again, whatever
        their state (re-run of a node after a fix or a data change), in any final execution.
        """
        self._check_accepting()
        record = await self.store.get_execution(execution_id)
        allowed = (
            FINAL_EXECUTION_STATES
            if from_node is not None
            else {ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}
        )
        if record.status not in allowed:
            raise InvalidTransition(
                f"cannot retry execution {execution_id}: it is {record.status.value} "
                f"({'wait for it to finish' if from_node else 'only failed or cancelled ones'})"
            )
        live = self._live.get(execution_id)
        if live is None and self._forwards(record):
            compiled = await self._compiled_for(record.definition_id)
            if from_node is not None and from_node not in compiled.plan.index:
                raise ExecutionNotFound(f"execution {execution_id} has no node '{from_node}'")
            await self._forward(execution_id, RetryRequested(time.time(), from_node))
            return
        if live is None:
            await self._claim(record, "retry", expected=record.owner)
            live = await self._load(record)
        if from_node is not None and from_node not in live.compiled.plan.index:
            raise ExecutionNotFound(f"execution {execution_id} has no node '{from_node}'")
        live = self._install(live)
        await self._post_and_wait(execution_id, RetryRequested(time.time(), from_node))
        self._arm_deadline(live, time.time())

    async def _control_target(self, execution_id: str, verb: str) -> _Live | ExecutionRecord:
        """The live execution to apply a control event to, or, in scale-out mode, the record
        of one driven by another process (the event is then forwarded to it)."""
        self._check_accepting()
        live = self._live.get(execution_id)
        if live is not None:
            status = live.machine.status
            if live.machine.finished or (status is ExecutionStatus.PENDING and verb != "cancel"):
                raise InvalidTransition(
                    f"cannot {verb} execution {execution_id}: it is {live.machine.status.value}"
                )
            return live
        record = await self.store.get_execution(execution_id)
        if record.status in FINAL_EXECUTION_STATES or (
            record.status is ExecutionStatus.PENDING and verb != "cancel"
        ):
            raise InvalidTransition(
                f"cannot {verb} execution {execution_id}: it is {record.status.value}"
            )
        if self._forwards(record):
            return record
        await self._claim(record, verb, expected=record.owner)
        loaded = await self._load(record)
        live = self._install(loaded)
        if live is loaded and verb != "cancel":
            # Driven here from now on: its timers (a delay beside an approval) are armed and
            # its attempts in flight sent again, as on any start, or it would wait forever. A
            # cancel ends what was in flight instead of sending it again first.
            await self._recover([live])
        return live

    async def _claim(self, record: ExecutionRecord, verb: str, *, expected: str | None) -> None:
        """Take ownership of ``record`` or explain who holds it."""
        now = time.time()
        if record.owner == self.owner:
            expected = self.owner
        held_elsewhere = record.owner not in (None, self.owner) and not owner_is_dead(
            record.owner, record.lease_until, now
        )
        if held_elsewhere or not await self.store.claim_execution(
            record.id, self.owner, now + self.settings.lease_seconds, expected, now
        ):
            raise InvalidTransition(
                f"cannot {verb} execution {record.id}: it is being run by another process "
                f"({record.owner or 'unknown'}); {verb} it there, or stop that process first"
            )
        record.owner = self.owner

    def _check_accepting(self) -> None:
        if not self._accepting:
            raise ExecutionError("the engine is not running (not started, or shutting down)")

    # ------------------------------------------------------------------ validation of a trigger

    # ------------------------------------------------------------------ the loop

    def _post(self, execution_id: str, event: Event) -> None:
        """Event sink for workers and timers (cause: the attempt's dispatch record)."""
        live = self._live.get(execution_id)
        cause = None
        node = getattr(event, "node", None)
        if live is not None and node is not None:
            cause = live.queued_event.get(node)
        self._inbox.append(_Posted(execution_id, event, cause))
        self._wake.set()

    async def _post_and_wait(self, execution_id: str, event: Event) -> None:
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._inbox.append(_Posted(execution_id, event, None, ack))
        self._wake.set()
        await ack

    async def _run_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            yielded = time.perf_counter()
            while self._inbox:
                items, self._inbox = self._inbox, []
                try:
                    await self._turn(items)
                except Exception:  # the loop must survive anything a turn raises
                    logger.exception("engine turn failed")
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

    async def _turn(self, items: list[_Posted]) -> None:
        batch = CommitBatch(owner=self.owner, audit=self.audit.signer)
        actions: list[tuple[_Live, Command, str | None]] = []
        touched: dict[str, list[Record]] = {}
        for item in items:
            live = self._live.get(item.execution_id)
            if live is None:
                if item.redeliverable and item.ack is not None and not item.ack.done():
                    # Dropped meanwhile (a failed commit) or finished: the stream entry is
                    # delivered again and routed afresh, instead of being acknowledged lost.
                    item.ack.set_exception(
                        ExecutionError(f"execution {item.execution_id} is not driven here")
                    )
                continue  # a late result for an execution that already ended
            step = live.machine.apply(item.event)
            self._absorb(live, step, batch, actions, item.cause, touched)
        if actions and self.settings.inline_attempts:
            self._run_inline(batch, actions, touched)
        if batch:
            try:
                await self.store.commit(batch)
            except StoreError as exc:
                self._commit_failed(touched, exc, items)
                return
        for item in items:
            if item.ack is not None and not item.ack.done():
                item.ack.set_result(None)
        self._notify(touched)
        await self._act(actions)

    def _absorb(
        self,
        live: _Live,
        step: Step,
        batch: CommitBatch,
        actions: list[tuple[_Live, Command, str | None]],
        cause: str | None,
        touched: dict[str, list[Record]],
    ) -> None:
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
            if record.has_output and record.node is not None:
                live.outputs[record.node] = record.output
            if record.type == "node.queued" and record.node is not None:
                live.queued_event[record.node] = event_id
            elif record.type == "node.waiting" and record.wait_reason == "child":
                self._children.parent_waits(execution_id, record.node or "")
        for command in step.commands:
            if (
                isinstance(command, ExecutionFinished)
                and command.status is ExecutionStatus.COMPLETED
            ):
                batch.results[execution_id] = live.compiled.result_from(live.outputs)
            actions.append((live, command, first))

    def _run_inline(
        self,
        batch: CommitBatch,
        actions: list[tuple[_Live, Command, str | None]],
        touched: dict[str, list[Record]],
    ) -> None:
        """Run the turn's attempts that have nothing to wait for, and those they lead to, now.

        Their handlers have no effect outside the engine (``HandlerSpec.run_now``), so running
        one before its start is committed acts on nothing: its start and outcome join this
        turn's batch, and nobody (listener, API, worker, timer) sees any of it before the
        commit. A crash before that commit loses the lot, and recovery runs them again. A
        chain of such nodes is one commit instead of one per node, up to ``_INLINE_BUDGET``.
        """
        dispatcher = self._dispatcher
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
            if not dispatcher.can_run_inline(plan.nodes[plan.index[command.node]].handler):
                continue
            events = dispatcher.run_inline(
                self._task(live, command.node, command.attempt, command.woken)
            )
            if events is None:
                continue
            ran.add(i - 1)
            cause = live.queued_event.get(command.node)
            for event in events:
                self._absorb(live, live.machine.apply(event), batch, actions, cause, touched)
        if ran:
            actions[:] = [action for j, action in enumerate(actions) if j not in ran]

    def _commit_failed(
        self, touched: dict[str, list[Record]], exc: StoreError, items: list[_Posted]
    ) -> None:
        """Forget the uncommitted turn: drop the executions and reload them from the store."""
        logger.error("commit failed, reloading %d execution(s): %s", len(touched), exc)
        for execution_id in touched:
            live = self._live.pop(execution_id, None)
            if live is not None:
                self._disarm(live)
                asyncio.get_running_loop().call_later(1.0, self._schedule_reload, execution_id)
        for item in items:
            if item.ack is not None and not item.ack.done():
                item.ack.set_exception(exc)

    def _schedule_reload(self, execution_id: str, attempt: int = 1) -> None:
        task = asyncio.ensure_future(self._reload(execution_id, attempt))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _reload(self, execution_id: str, attempt: int = 1) -> None:
        try:
            record = await self.store.get_execution(execution_id)
            if record.status in FINAL_EXECUTION_STATES or execution_id in self._live:
                return
            if record.owner not in (None, self.owner):
                return  # taken over meanwhile
            live = await self._load(record)
            if self._install(live) is live:
                await self._recover([live])
        except OrchestrionError as exc:
            # The store is still down: try again, less and less often, while we hold it.
            self._live.pop(execution_id, None)
            delay = min(30.0, 2.0**attempt)
            logger.warning(
                "could not reload execution %s (%s); again in %gs", execution_id, exc, delay
            )
            if self._accepting:
                asyncio.get_running_loop().call_later(
                    delay, self._schedule_reload, execution_id, attempt + 1
                )

    def _notify(self, touched: dict[str, list[Record]]) -> None:
        if not self._listeners:
            return
        for execution_id, records in touched.items():
            for listener in list(self._listeners):
                try:
                    listener(execution_id, records)
                except Exception:
                    logger.exception("record listener failed")

    async def _act(self, actions: list[tuple[_Live, Command, str | None]]) -> None:
        tasks: list[TaskMessage] = []
        dispatcher = self._dispatcher
        assert dispatcher is not None
        for live, command, _cause in actions:
            if isinstance(command, Dispatch):
                tasks.append(self._task(live, command.node, command.attempt, command.woken))
            elif isinstance(command, ScheduleTimer):
                self._arm_timer(live, command)
            elif isinstance(command, CancelNode):
                live.timers.pop((command.node, command.attempt, "retry"), None)
                await dispatcher.cancel(live.record.id, command.node, command.attempt)
                self._children.parent_stopped(live.record.id, command.node)
            elif isinstance(command, RunCompensation):
                tasks.append(self._compensation_task(live, command.node))
            elif isinstance(command, ExecutionFinished):
                self._finish(live, command.status)
        if tasks:
            await dispatcher.dispatch(tasks)

    def _task(self, live: _Live, node_id: str, attempt: int, woken: bool) -> TaskMessage:
        wait_result = None
        if woken:
            run = live.machine.nodes[live.compiled.plan.index[node_id]]
            wait_result = {"woken": True, "reason": run.wait_reason, "wake_at": run.wake_at}
        return live.compiled.task_message(live.record, live.outputs, node_id, attempt, wait_result)

    def _compensation_task(self, live: _Live, node_id: str) -> TaskMessage:
        attempt = live.machine.nodes[live.compiled.plan.index[node_id]].attempt
        return live.compiled.compensation_message(live.record, live.outputs, node_id, attempt)

    def _arm_timer(self, live: _Live, command: ScheduleTimer) -> None:
        key = (command.node, command.attempt, command.kind)
        old = live.timers.pop(key, None)
        if old is not None:
            old.cancel()
        delay = max(0.0, command.fire_at - time.time())
        execution_id = live.record.id

        def fire() -> None:
            live.timers.pop(key, None)
            self._post(
                execution_id, TimerFired(command.node, command.attempt, time.time(), command.kind)
            )

        live.timers[key] = asyncio.get_running_loop().call_later(delay, fire)

    def _arm_deadline(self, live: _Live, started_at: float) -> None:
        timeout = live.compiled.plan.spec.timeout
        if timeout is None or live.machine.finished:
            return
        if live.deadline is not None:
            live.deadline.cancel()
        delay = max(0.0, started_at + timeout - time.time())
        execution_id = live.record.id
        live.deadline = asyncio.get_running_loop().call_later(
            delay, lambda: self._post(execution_id, ExecutionTimedOut(time.time()))
        )

    def _disarm(self, live: _Live) -> None:
        for handle in live.timers.values():
            handle.cancel()
        live.timers.clear()
        if live.deadline is not None:
            live.deadline.cancel()
            live.deadline = None

    def _finish(self, live: _Live, status: ExecutionStatus) -> None:
        self._progress.pop(live.record.id, None)
        self._disarm(live)
        self._live.pop(live.record.id, None)
        if not live.done.done():
            live.done.set_result(status)
        self._children.finished(
            live.record, status, live.compiled.result_from(live.outputs), live.machine.error
        )

    # ------------------------------------------------------------------ loading and resuming

    def _make_live(
        self, record: ExecutionRecord, compiled: CompiledWorkflow, outputs: dict[str, Any]
    ) -> _Live:
        machine = ExecutionMachine(compiled.plan, record.id, rng=self._rng, status=record.status)
        done: asyncio.Future[ExecutionStatus] = asyncio.get_running_loop().create_future()
        return _Live(record, compiled, machine, outputs, done)

    async def _load(self, record: ExecutionRecord) -> _Live:
        """Rebuild an execution's machine and output cache from the store."""
        compiled = await self._compiled_for(record.definition_id)
        runs = await self.store.get_node_runs(record.id)
        outputs = await self.store.get_outputs(record.id)
        live = self._make_live(record, compiled, outputs)
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
        live.machine.restore(record.status, record.phase, nodes, record.error)
        return live

    async def _heartbeat(self) -> None:
        """Renew the leases of live executions; take over executions whose owner died."""
        interval = max(0.1, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                ids = [eid for eid, live in self._live.items() if not live.machine.finished]
                if ids:
                    until = time.time() + self.settings.lease_seconds
                    for lost in await self.store.renew_leases(self.owner, ids, until):
                        self._drop_lost(lost)
                if self._resume and self._accepting:
                    await self._resume_unfinished()
            except OrchestrionError:
                logger.exception("lease renewal failed; retrying")

    def _drop_lost(self, execution_id: str) -> None:
        live = self._live.pop(execution_id, None)
        if live is None or live.machine.finished:
            return
        logger.warning("execution %s was taken over by another process", execution_id)
        self._disarm(live)
        if not live.done.done():
            live.done.set_exception(
                ExecutionError(f"execution {execution_id} was taken over by another process")
            )
            live.done.exception()  # seen: with nobody waiting here it is not an error

    async def _resume_unfinished(self) -> None:
        lives = []
        now = time.time()
        live_owners = getattr(self._dispatcher, "live_owners", None)
        alive: set[str] | None = live_owners() if live_owners is not None else None
        for record in await self.store.unfinished_executions():
            if record.id in self._live:
                continue
            mine = record.owner == self.owner  # ours but dropped (a commit failed): reload
            if mine and record.status is ExecutionStatus.PENDING:
                continue  # a start in this process is beginning it at this moment
            if (
                not mine
                and not owner_is_dead(record.owner, record.lease_until, now)
                and (alive is None or record.owner in alive)
            ):
                continue  # another live engine drives it
            if not await self.store.claim_execution(
                record.id, self.owner, now + self.settings.lease_seconds, record.owner, now
            ):
                continue
            try:
                live = await self._load(record)
            except OrchestrionError:
                logger.exception("cannot resume execution %s", record.id)
                continue
            if self._install(live) is live:
                lives.append(live)
        if lives:
            logger.info("resuming %d unfinished execution(s)", len(lives))
            await self._recover(lives)
            for live in lives:
                if live.machine.status is ExecutionStatus.PENDING and (
                    self._live.get(live.record.id) is live
                ):
                    # Created owned by a start that a crash cut off before its Started was
                    # committed: the start is what is left to do.
                    at = time.time()
                    self._post(live.record.id, Started(at))
                    self._arm_deadline(live, at)

    async def _recover(self, lives: list[_Live]) -> None:
        batch = CommitBatch(owner=self.owner, audit=self.audit.signer)
        actions: list[tuple[_Live, Command, str | None]] = []
        touched: dict[str, list[Record]] = {}
        now = time.time()
        for live in lives:
            step = live.machine.recover(now)
            self._absorb(live, step, batch, actions, None, touched)
        if batch:
            try:
                await self.store.commit(batch)
            except StoreError:
                for live in lives:  # nothing of the batch was written: forget the machines
                    if self._live.get(live.record.id) is live:
                        self._disarm(live)
                        del self._live[live.record.id]
                if len(lives) == 1:
                    raise
                # Typically one execution was taken over while the others loaded (its lease
                # ran out first): one by one, the others are recovered all the same.
                for live in lives:
                    with contextlib.suppress(OrchestrionError):
                        await self._recover_alone(live.record.id)
                return
        self._notify(touched)
        for live in lives:
            if live.record.started_at is not None:
                self._arm_deadline(live, live.record.started_at)
        await self._act(actions)
        for live in lives:
            # A parent waiting on a child re-runs its node: it finds the child (same key) and
            # either takes its result or waits again, so no finish is lost across a restart.
            for i, run in enumerate(live.machine.nodes):
                if run.state is NodeState.WAITING and run.wait_reason == "child":
                    node_id = live.compiled.plan.ids[i]
                    self._post(live.record.id, TimerFired(node_id, run.attempt, now, "wake"))

    async def _recover_alone(self, execution_id: str) -> None:
        record = await self.store.get_execution(execution_id)
        if record.owner != self.owner or record.status in FINAL_EXECUTION_STATES:
            return  # another engine drives it now
        live = await self._load(record)
        if self._install(live) is live:
            await self._recover([live])

    def _install(self, live: _Live) -> _Live:
        """Make ``live`` its execution's machine, unless another path installed one while it
        loaded (a reload after a failed commit, the heartbeat's resume, an event routed from a
        stream, an operator's request): the machine in place, which only the path that
        installed it recovers. Two machines would each recover the execution (two dispatches
        of what was in flight), and the one loaded first, from an older snapshot, would write
        over what the other committed."""
        return self._live.setdefault(live.record.id, live)

    # ------------------------------------------------------------------ helpers for callers

    def live_machine(self, execution_id: str) -> ExecutionMachine | None:
        """The state machine of an execution this engine drives right now, if any."""
        live = self._live.get(execution_id)
        return live.machine if live is not None else None

    def post(self, execution_id: str, event: Event) -> None:
        """Hand an event to the engine loop (from handlers' helpers and timers)."""
        self._post(execution_id, event)

    # ------------------------------------------------------------------ scale-out hooks

    def is_live(self, execution_id: str) -> bool:
        """Whether this engine drives the execution right now."""
        return execution_id in self._live

    def deliver(self, execution_id: str, event: Event) -> asyncio.Future[None]:
        """Post ``event``; the future resolves once the turn that applied it is committed
        (and fails if that commit failed), so a stream entry is acknowledged only then."""
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        live = self._live.get(execution_id)
        node = getattr(event, "node", None)
        cause = live.queued_event.get(node) if live is not None and node is not None else None
        self._inbox.append(_Posted(execution_id, event, cause, ack, redeliverable=True))
        self._wake.set()
        return ack

    async def adopt(self, record: ExecutionRecord) -> bool:
        """Claim an unfinished (or, for a retry, finished) execution nobody alive drives, load
        it and carry on from the store. False when another engine claimed it first."""
        if record.id in self._live:
            return True
        now = time.time()
        if not await self.store.claim_execution(
            record.id, self.owner, now + self.settings.lease_seconds, record.owner, now
        ):
            return False
        fresh = await self.store.get_execution(record.id)
        live = await self._load(fresh)
        if self._install(live) is not live:
            return True  # loaded meanwhile by another path: that machine drives it
        await self._recover([live])
        return True

    async def begin_handed_over(self, record: ExecutionRecord) -> bool:
        """Start a triggered execution another process handed over (``Started`` from the
        completions stream). Exactly one engine wins the claim; the others return False."""
        now = time.time()
        if not await self.store.claim_execution(
            record.id, self.owner, now + self.settings.lease_seconds, None, now
        ):
            return False
        fresh = await self.store.get_execution(record.id)
        if fresh.status is not ExecutionStatus.PENDING:
            # A late duplicate of a start that already ran: give the claim back.
            await self.store.release_executions(self.owner, [record.id])
            return False
        compiled = await self._compiled_for(fresh.definition_id)
        await self._begin(fresh, compiled)
        return True

    async def hand_over_again(self, older_than: float = 0.0) -> int:
        """Send ``Started`` again for triggered executions no orchestrator has claimed yet
        (pending, with a correlation id, no owner) and created at least ``older_than``
        seconds ago (a younger start may be on its way): their hand-over was lost with the
        queue's data, or never reached it (the API committed the start, then the queue
        failed). A start delivered twice is claimed once. Returns how many."""
        count = 0
        cursor: str | None = None
        before = time.time() - older_than
        while True:
            page, cursor = await self.store.list_executions(
                ExecutionFilter(status=[ExecutionStatus.PENDING], cursor=cursor, limit=500)
            )
            for record in page:
                if (
                    record.correlation_id is not None
                    and record.owner is None
                    and record.created_at <= before
                ):
                    await self._forward(record.id, Started(time.time()))
                    count += 1
            if cursor is None:
                return count

    async def redispatch_in_flight(self, check_journal: bool = False) -> int:
        """Dispatch again every queued or running attempt of the live executions (the queue
        lost its data: a Redis restart without persistence). Returns how many.

        ``check_journal``: first read each execution's record and node runs from the store
        and leave out attempts that ended there (a completion already committed, or committed
        by another engine that took the execution over) and executions this engine no longer
        owns, so a completed node never runs again."""
        actions: list[tuple[_Live, Command, str | None]] = []
        for live in list(self._live.values()):
            if live.machine.finished:
                continue
            plan = live.compiled.plan
            candidates = [
                (i, run.attempt)
                for i, run in enumerate(live.machine.nodes)
                if run.state is NodeState.QUEUED or run.state is NodeState.RUNNING
            ]
            if candidates and check_journal:
                candidates = await self._not_ended(live, candidates)
            for i, attempt in candidates:
                run = live.machine.nodes[i]
                if run.attempt != attempt or run.state not in _IN_FLIGHT:
                    continue  # its result was applied meanwhile
                woken = run.wait_reason is not None and run.wait_reason != "retry"
                actions.append((live, Dispatch(plan.ids[i], run.attempt, woken=woken), None))
        if actions:
            await self._act(actions)
        return len(actions)

    async def _not_ended(
        self, live: _Live, candidates: list[tuple[int, int]]
    ) -> list[tuple[int, int]]:
        """The (node index, attempt) pairs of ``candidates`` that neither the journal nor the
        results waiting in this engine's inbox say have ended."""
        execution_id = live.record.id
        try:
            record = await self.store.get_execution(execution_id)
            stored = {r.node_id: r for r in await self.store.get_node_runs(execution_id)}
        except OrchestrionError:
            # The store does not answer: dispatching again is the safe side (a lost attempt
            # would stall the execution; a duplicate runs under the same idempotency key).
            return candidates
        if record.status in FINAL_EXECUTION_STATES or record.owner != self.owner:
            return []  # ended, or driven by another engine now: it is not ours to dispatch
        arrived = {
            (posted.event.node, posted.event.attempt)
            for posted in self._inbox
            if posted.execution_id == execution_id
            and isinstance(posted.event, NodeSucceeded | NodeFailed | NodeSkipped)
        }
        ids = live.compiled.plan.ids
        kept = []
        for i, attempt in candidates:
            if (ids[i], attempt) in arrived:
                continue
            run = stored.get(ids[i])
            if run is not None and (
                run.attempt > attempt or (run.attempt == attempt and run.state not in _IN_FLIGHT)
            ):
                continue
            kept.append((i, attempt))
        return kept

    def still_in_flight(self, tasks: list[TaskMessage]) -> list[TaskMessage]:
        """The attempts of ``tasks`` this engine still waits for (a dispatch that is sent
        late, after the queue failed, must not run an attempt whose result came meanwhile)."""
        kept = []
        for task in tasks:
            live = self._live.get(task.execution_id)
            if live is None or live.machine.finished:
                continue
            index = live.compiled.plan.index.get(task.node_id)
            if index is None:
                continue
            run = live.machine.nodes[index]
            if task.kind != "run" or (run.attempt == task.attempt and run.state in _IN_FLIGHT):
                kept.append(task)
        return kept

    async def node_states(self, execution_id: str) -> dict[str, NodeState]:
        live = self._live.get(execution_id)
        if live is not None:
            plan = live.compiled.plan
            return {plan.ids[i]: run.state for i, run in enumerate(live.machine.nodes)}
        runs = await self.store.get_node_runs(execution_id)
        return {run.node_id: run.state for run in runs}


_IN_FLIGHT = frozenset({NodeState.QUEUED, NodeState.RUNNING})
_HAND_OVER_SECONDS = 3.0  # a start's hand-over to the queue; the sweep does the rest

# Past this many nodes, building or hashing a definition runs in a worker thread, so that the
# event loop (health checks, other requests) is never held for long by one definition.
_THREAD_ABOVE_NODES = LARGE_DEFINITION_NODES


def _node_count(spec: WorkflowSpec | dict[str, Any]) -> int:
    if isinstance(spec, WorkflowSpec):
        return len(spec.dag.nodes)
    dag = spec.get("dag")
    nodes = dag.get("nodes") if isinstance(dag, dict) else None
    return len(nodes) if isinstance(nodes, list) else 0


_P = ParamSpec("_P")
_R = TypeVar("_R")


async def _off_loop(
    spec: WorkflowSpec | dict[str, Any],
    freeze: bool,
    work: Callable[_P, _R],
    *args: _P.args,
    **kwargs: _P.kwargs,
) -> _R:
    """``work(...)`` in a worker thread when ``spec`` is large, else here; ``freeze``: then
    freeze what the collector tracks (the results are kept as long as the engine runs)."""
    nodes = _node_count(spec)
    if nodes <= _THREAD_ABOVE_NODES:
        return work(*args, **kwargs)

    def paused() -> _R:
        # A collection holds the GIL, so the event loop would wait for it as if it ran
        # there: none runs meanwhile, and what was made is frozen before one can (gc_tuning).
        from orchestrion.definition.validate import gc_paused

        with gc_paused():
            result = work(*args, **kwargs)
            freeze_large(nodes, freeze)
            return result

    return await asyncio.to_thread(paused)


def _content_hash(spec: WorkflowSpec) -> str:
    canonical = spec.model_dump(mode="json", exclude={"version"})
    return hashlib.sha256(
        json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _compile_stored(definition_id: str, spec: dict[str, Any]) -> CompiledWorkflow:
    return CompiledWorkflow.build(definition_id, WorkflowSpec.model_validate(spec))
