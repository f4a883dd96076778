"""The store interface: where definitions, executions, node runs and the event journal live.

Adapters (``memory``, ``sqlite``, later ``postgres``) implement ``Store``. The engine calls
``commit`` with every record a batch of events produced, across executions, and acts on the
commands only after ``commit`` returned: a state change is durable before anything follows it.
``commit`` is atomic: all of the batch or nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrion.core.events import NodeLogged, Record
from orchestrion.core.id_parts import id_prefix, id_suffix
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.governance.trust import Trust
from orchestrion.store.audit import AuditEntry, AuditFilter, AuditRecord, AuditSigner, StoredHead
from orchestrion.store.journal_marks import TOUCHED_LIMIT, Marks
from orchestrion.store.journal_request import JournalRequest
from orchestrion.store.outbox import OutboxStore
from orchestrion.store.pending_trigger import PendingTrigger
from orchestrion.store.schedules import ScheduleStore
from orchestrion.store.sessions import SessionStore

__all__ = [
    "TOUCHED_LIMIT",
    "AuditEntry",
    "AuditFilter",
    "AuditRecord",
    "AuditSigner",
    "CommitBatch",
    "DefinitionRecord",
    "EventRecord",
    "ExecutionFilter",
    "ExecutionRecord",
    "ExecutionSnapshot",
    "JournalRequest",
    "LogFilter",
    "LogLineRecord",
    "Marks",
    "NodeRunRecord",
    "Store",
    "TriggerClaim",
]


@dataclass(slots=True)
class DefinitionRecord:
    """A stored workflow definition version. ``spec`` is the canonical JSON (model_dump).

    ``trust`` is that of the process that first stored it (``governance/trust.py``); storing
    the same content again does not change it.
    """

    id: str
    name: str
    version: str
    spec: dict[str, Any]
    content_hash: str
    source_format: str  # "yaml" | "json" | "python"
    dialect: str  # "canonical" | "swarmlite" | "agent_platform"
    created_at: float
    source: str | None = None
    trust: Trust = Trust.UNTRUSTED
    status: str = "available"  # "available", "active" or "deprecated" (store/rules.py)
    created_by: str | None = None
    status_changed_at: float | None = None
    status_changed_by: str | None = None


@dataclass(slots=True)
class ExecutionRecord:
    """One execution of one definition version.

    ``owner`` is the engine process that runs it and ``lease_until`` (epoch seconds) how long
    that claim holds without renewal; both are None when no process owns it (see
    ``Store.claim_execution``).
    """

    id: str
    definition_id: str
    status: ExecutionStatus
    created_at: float
    inputs: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency_key: str | None = None
    correlation_id: str | None = None
    phase: str = "run"
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float | None = None
    result: Any = None
    error: dict[str, Any] | None = None
    parent_execution_id: str | None = None
    parent_node_id: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)
    owner: str | None = None
    lease_until: float | None = None
    trust: Trust = Trust.UNTRUSTED


@dataclass(slots=True)
class NodeRunRecord:
    """The current state of one node in one execution."""

    execution_id: str
    node_id: str
    state: NodeState
    attempt: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    output: Any = None
    error: dict[str, Any] | None = None
    wait_reason: str | None = None
    wake_at: float | None = None
    compensation: str | None = None
    updated_at: float | None = None


@dataclass(slots=True)
class EventRecord:
    """One entry of the append-only event journal. ``seq`` is global and increasing."""

    seq: int
    id: str
    execution_id: str
    type: str
    at: float
    node_id: str | None = None
    attempt: int = 0
    correlation_id: str | None = None
    causation_id: str | None = None
    data: dict[str, Any] | None = None


@dataclass(slots=True)
class ExecutionSnapshot:
    """An execution as one read saw it: its record, the latest run of each node that has one
    (in insertion order), and the journal events of the types asked for, oldest first."""

    record: ExecutionRecord
    runs: list[NodeRunRecord]
    events: list[EventRecord]


@dataclass(frozen=True, slots=True)
class TriggerClaim:
    """A trigger's claim on a pending execution (``claim_execution``'s compare-and-swap) and
    what it sets once it holds it (``update_execution_inputs``'s values)."""

    execution_id: str
    owner: str
    lease_until: float
    expected_owner: str | None
    now: float
    inputs: dict[str, Any]
    overrides: dict[str, dict[str, Any]]
    correlation_id: str | None


@dataclass(slots=True)
class LogLineRecord:
    """One log line a node attempt wrote (``execution/log_capture.py``); ``seq`` orders the
    lines of every execution and is what readers page and resume by."""

    seq: int
    execution_id: str
    node_id: str
    attempt: int
    at: float
    level: str
    logger: str
    message: str


@dataclass(frozen=True, slots=True)
class LogFilter:
    """Which log lines of one execution to read: of one node, of one attempt, after a seq."""

    execution_id: str
    node_id: str | None = None
    attempt: int | None = None
    after_seq: int = 0
    limit: int = 100


@dataclass(slots=True)
class CommitBatch:
    """Everything one turn of the engine loop must make durable, in order.

    ``records`` pairs an execution id with a machine ``Record``; each becomes one journal row
    (its id, correlation and causation ids given in ``event_ids``/``correlation``/``causation``)
    and updates the node run or execution it is about. ``results`` sets execution results
    (the workflow output) for executions that completed in this batch. ``logs`` are the
    log lines attempts reported (``NodeLogged``), stored in order with the rest.
    ``requests`` are control requests journalled in the same transaction (a request on an
    execution that no longer exists is left out).
    """

    records: list[tuple[str, Record]] = field(default_factory=list)
    event_ids: list[str] = field(default_factory=list)
    causation: list[str | None] = field(default_factory=list)
    correlation: dict[str, str | None] = field(default_factory=dict)
    results: dict[str, Any] = field(default_factory=dict)
    # The committing engine: a store shared by processes (PostgreSQL) refuses the whole batch
    # when another owner took one of its executions over (fencing a stale engine).
    owner: str | None = None
    # With a signer, every record is also an audit record, sealed in the same transaction.
    audit: AuditSigner | None = None
    logs: list[tuple[str, NodeLogged]] = field(default_factory=list)
    # Event sinks are configured: every journal row is also an outbox entry, in the same
    # transaction (store/outbox.py). Off, a commit costs nothing more.
    outbox: bool = False
    requests: list[JournalRequest] = field(default_factory=list)
    # Ended executions whose followers are owed: (id, workflow.completed | .failed).
    follows: list[tuple[str, str]] = field(default_factory=list)

    def add(self, execution_id: str, record: Record, event_id: str, cause: str | None) -> None:
        self.records.append((execution_id, record))
        self.event_ids.append(event_id)
        self.causation.append(cause)

    def __bool__(self) -> bool:
        return bool(self.records) or bool(self.results) or bool(self.logs) or bool(self.requests)

    def split(self) -> dict[str, CommitBatch]:
        """The batch as one batch per execution, each in the order of this one: committed
        each alone when this one was refused, so one bad record fails only its execution."""
        parts: dict[str, CommitBatch] = {}

        def part(execution_id: str) -> CommitBatch:
            found = parts.get(execution_id)
            if found is None:
                found = parts[execution_id] = CommitBatch(
                    owner=self.owner, audit=self.audit, outbox=self.outbox
                )
                if execution_id in self.correlation:
                    found.correlation[execution_id] = self.correlation[execution_id]
            return found

        for (execution_id, record), event_id, cause in zip(
            self.records, self.event_ids, self.causation, strict=True
        ):
            part(execution_id).add(execution_id, record, event_id, cause)
        for execution_id, result in self.results.items():
            part(execution_id).results[execution_id] = result
        for execution_id, logged in self.logs:
            part(execution_id).logs.append((execution_id, logged))
        for request in self.requests:
            part(request.source).requests.append(request)
        for execution_id, ending in self.follows:
            part(execution_id).follows.append((execution_id, ending))
        return parts


@dataclass(slots=True)
class ExecutionFilter:
    """Filters for listing executions; ``cursor`` is opaque (from the previous page)."""

    status: list[ExecutionStatus] | None = None
    definition_name: str | None = None
    definition_id: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    cursor: str | None = None
    limit: int = 50
    id_prefix: str | None = None  # executions whose id starts with it (unique-prefix lookup)
    # Executions whose id ends with it: an id begins with the time it was made, so its last
    # characters are what tell two of one minute apart (index: id_reversed, migration 0013).
    id_suffix: str | None = None
    trigger: str | None = None  # what started them: one of ``rules.TRIGGERS``
    idempotency_keys: list[str] | None = None  # the executions made with one of these keys

    def __post_init__(self) -> None:  # dashes optional in both parts (core/id_parts.py)
        self.id_prefix = None if self.id_prefix is None else id_prefix(self.id_prefix)
        self.id_suffix = None if self.id_suffix is None else id_suffix(self.id_suffix)


class Store(ScheduleStore, OutboxStore, SessionStore, Protocol):
    """Persistence for the engine. Every method may raise ``StoreError``. The schedule
    methods are declared in ``store/schedules.py``, the outbox's in ``store/outbox.py``,
    the sign-outs' in ``store/sessions.py``."""

    async def open(self) -> None:
        """Connect and bring the schema to the current migration."""

    async def close(self) -> None: ...

    # definitions
    async def put_definition(self, record: DefinitionRecord) -> DefinitionRecord:
        """Insert, or return the existing record with the same (name, version) and hash.

        Raises ``ExecutionError`` when (name, version) exists with a different content hash.
        """

    async def get_definition(self, definition_id: str) -> DefinitionRecord:
        """Raises ``ExecutionNotFound`` when absent."""

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        """The given version, or the active one (``store/rules.py``: marked active, else the
        newest available). Raises ``ExecutionNotFound`` when absent, or when no version is
        given and every version is deprecated."""

    async def set_definition_status(
        self, name: str, version: str, status: str, at: float, by: str | None = None
    ) -> DefinitionRecord:
        """Give a version ``status`` (``available``, ``active``, ``deprecated``); making one
        active makes the name's previously active version available, in one transaction.
        Raises ``ExecutionNotFound`` when the version does not exist."""

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None: ...

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]: ...

    async def definition_heads(self) -> list[tuple[str, str]]:
        """``(name, id)`` of the active version of every definition name that has one
        (``store/rules.py``), by name, without reading a single definition's text."""

    async def next_version(self, name: str) -> str:
        """The next automatic version number for ``name`` ("1", "2", ...)."""

    # executions
    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        """Insert; if ``idempotency_key`` is taken return (existing, False), else (record, True)."""

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        """``create_execution`` for each record in order, in one transaction: all or none.

        A key given twice in ``records`` is taken by the first of them. Raises what
        ``create_execution`` raises for the first record that fails, and then writes nothing.
        """

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        """Raises ``ExecutionNotFound`` when absent."""

    async def update_execution_inputs(
        self,
        execution_id: str,
        inputs: dict[str, Any],
        overrides: dict[str, dict[str, Any]],
        correlation_id: str | None,
    ) -> None:
        """Set trigger-time inputs and node overrides (before the ``execution.started`` commit)."""

    async def distrust_execution(self, execution_id: str) -> None:
        """Make the execution untrusted (there is no way back: trust is only ever lowered).
        Raises ``ExecutionNotFound`` when absent."""

    async def trigger_pending(self, trigger: PendingTrigger) -> bool:
        """Set a trigger's values if the execution is pending with no correlation id (never
        triggered nor started), in one compare-and-swap write: True when this call won, False
        (nothing changed) when another came first. ``ExecutionNotFound`` when absent."""

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        """A page of executions, newest first, and the cursor of the next page (or None)."""

    async def count_executions(self, flt: ExecutionFilter) -> dict[ExecutionStatus, int]:
        """How many executions match ``flt`` (its cursor and limit aside), by status."""

    async def count_executions_over_time(
        self, flt: ExecutionFilter, origin: float, bucket: float, buckets: int
    ) -> dict[int, dict[ExecutionStatus, int]]:
        """Counts by status of the executions matching ``flt`` created in
        [origin, origin + bucket * buckets), by bucket index (buckets with none left out)."""

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        """What a restart must resume: executions that are running, waiting or paused, and
        pending ones that were triggered (a correlation id) and are owned already: a start
        creates its execution so, and a crash before the start is committed leaves it so."""

    # ownership leases: several engine processes on one database never run one execution twice
    async def claim_execution(
        self,
        execution_id: str,
        owner: str,
        lease_until: float,
        expected_owner: str | None,
        now: float,
    ) -> bool:
        """Atomically make ``owner`` the owner until ``lease_until``; True when it took it.

        A compare-and-swap: it succeeds only when the current owner is ``expected_owner``
        (None matches no owner) or the current lease ran out (``lease_until < now``). The
        status is not looked at. Raises ``ExecutionNotFound`` when absent.
        """

    async def claim_to_trigger(self, claim: TriggerClaim) -> bool:
        """``claim_execution`` and, only when it took the execution, the inputs set as
        ``update_execution_inputs`` sets them, in one write (one commit, not two)."""

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        """Extend to ``lease_until`` the leases ``owner`` still holds among ``execution_ids``.

        Returns the others, in the given order: executions taken over, released, finished
        (a final status clears the owner) or unknown, which the caller must stop running.
        """

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        """Drop ``owner``'s claim on these executions (all of its own when None), so another
        process can claim them at once instead of waiting for the leases to run out."""

    # node runs and events
    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]: ...

    async def get_execution_snapshot(
        self, execution_id: str, event_types: list[str]
    ) -> ExecutionSnapshot:
        """``get_execution``, ``get_node_runs`` and every event of the execution of
        ``event_types`` (none when empty) in one read: one connection, one answer of each.
        Raises ``ExecutionNotFound`` when absent."""

    async def get_outputs(
        self, execution_id: str, node_ids: list[str] | None = None
    ) -> dict[str, Any]:
        """Outputs of completed (or compensated) nodes, by node id."""

    async def commit(self, batch: CommitBatch) -> None:
        """Persist the batch atomically (see ``CommitBatch``).

        An execution record with a final status (completed, failed, cancelled) also clears
        the execution's owner and lease. Ownership is not checked here: the engine commits
        only for executions it claimed.
        """

    async def list_events(
        self,
        execution_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
        types: list[str] | None = None,
    ) -> list[EventRecord]: ...

    async def list_node_logs(self, flt: LogFilter) -> list[LogLineRecord]:
        """Log lines of ``flt.execution_id`` (of its node and attempt when given) with a
        ``seq`` above ``flt.after_seq``, oldest first, at most ``flt.limit``."""

    # control requests: a process asks the owner of an execution to act (cancel, pause, ...)
    async def request_control(
        self,
        execution_id: str,
        event_id: str,
        request: dict[str, Any],
        at: float,
        audit: AuditSigner | None = None,
    ) -> int:
        """Journal a ``control.requested`` event (``request`` as its data) for the execution's
        owner to act on, changing nothing else; its ``seq``. Raises ``ExecutionNotFound``.
        With a signer, its audit record is sealed in the same transaction."""

    async def journal_head(self) -> int:
        """The largest ``seq`` of the journal (0 when empty)."""

    async def touched_since(self, marks: Marks | None) -> tuple[Marks, set[str] | None]:
        """The largest ``seq`` of the journal and of the node logs now, and the executions
        with events or log lines committed since ``marks`` (what an earlier call returned):
        how a process learns what other processes wrote (a store whose seqs may commit out
        of order also names some written just before). None instead of the executions when
        ``marks`` is None, or when more than ``TOUCHED_LIMIT`` executions were touched."""

    # audit trail (see ``orchestrion.store.audit``): append-only, sealed under the store's lock
    async def append_audit(
        self, entries: list[AuditEntry], signer: AuditSigner
    ) -> list[AuditRecord]:
        """Seal ``entries`` after the current head and insert them, atomically, so writers in
        several processes never fork the chain. Returns the sealed records."""

    async def list_audit(self, flt: AuditFilter) -> list[AuditRecord]:
        """Audit records matching ``flt``, in ``seq`` order (seq is also the storage order:
        without filters, pages of this are what ``verify`` reads)."""

    async def audit_head(self) -> StoredHead | None:
        """The head kept aside (updated and signed with every append): what the chain must
        end at. None when it is missing (removed by hand)."""

    # retention
    async def purge_executions(
        self, finished_before: float, signer: AuditSigner | None, actor: str | None, now: float
    ) -> int:
        """Delete executions that finished before ``finished_before`` with their node runs,
        node log lines and journal events, and the event sinks' dead letters last changed
        before it; returns how many executions. With a signer, the purge is one audit record
        (count and cutoff) in the same transaction. Audit records are never deleted."""
