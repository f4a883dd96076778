"""``MemoryStore``: the whole store in dictionaries, for tests and throw-away runs.

Same semantics as the SQL stores (idempotency keys, definition versioning, atomic commits,
cursor pagination) and the same behavioural test suite. Records handed out are copies, so a
caller cannot change the store by mutating them; the values inside them (inputs, outputs) are
shared, as they are JSON-like and treated as read-only by the engine.
"""

from __future__ import annotations

import bisect
import json
from collections.abc import Iterable
from dataclasses import replace
from typing import Any, cast

from orchestrion.core.events import Record
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.errors import ExecutionNotFound, StoreError
from orchestrion.governance.trust import Trust
from orchestrion.store import rules
from orchestrion.store.audit import (
    AuditEntry,
    AuditFilter,
    AuditRecord,
    AuditSigner,
    StoredHead,
    entry_items,
    purge_items,
    request_items,
    transition_items,
)
from orchestrion.store.base import (
    TOUCHED_LIMIT,
    CommitBatch,
    EventRecord,
    ExecutionFilter,
    ExecutionRecord,
    ExecutionSnapshot,
    JournalRequest,
    LogFilter,
    LogLineRecord,
    Marks,
    NodeRunRecord,
    TriggerClaim,
)
from orchestrion.store.memory_audit import MemoryAuditTrail
from orchestrion.store.memory_definitions import MemoryDefinitions
from orchestrion.store.memory_outbox import MemoryOutbox
from orchestrion.store.memory_schedules import MemorySchedules
from orchestrion.store.memory_sessions import MemorySessions
from orchestrion.store.pending_trigger import PendingTrigger

__all__ = ["MemoryStore"]

_UNFINISHED = frozenset(rules.UNFINISHED_STATUSES)
_WITH_OUTPUT = frozenset(rules.OUTPUT_STATES)


def _age_of(record: ExecutionRecord) -> float:
    """When a final execution finished; without a finish time (never started), its last
    update, then its creation (as the SQL stores' COALESCE)."""
    found = (value for value in (record.finished_at, record.updated_at) if value is not None)
    return next(found, record.created_at)


class MemoryStore(MemoryDefinitions, MemorySchedules, MemoryOutbox, MemorySessions):
    """A ``Store`` held in memory; nothing survives the process."""

    def __init__(self) -> None:
        self._executions: dict[str, ExecutionRecord] = {}
        self._by_idempotency_key: dict[str, str] = {}
        self._node_runs: dict[str, dict[str, NodeRunRecord]] = {}
        self._events: list[EventRecord] = []  # in seq order (a purge leaves gaps)
        self._next_seq = 1
        self._events_by_execution: dict[str, list[EventRecord]] = {}
        self._logs: dict[str, list[LogLineRecord]] = {}
        self._next_log_seq = 1
        self._audit = MemoryAuditTrail()
        MemoryDefinitions.__init__(self)
        MemorySchedules.__init__(self)
        MemorySessions.__init__(self)
        MemoryOutbox.__init__(self)

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # ------------------------------------------------------------------ executions

    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        key = record.idempotency_key
        if key is not None and key in self._by_idempotency_key:
            return replace(self._executions[self._by_idempotency_key[key]]), False
        if record.definition_id not in self._definitions:
            raise ExecutionNotFound(f"definition '{record.definition_id}' not found")
        if record.id in self._executions:
            raise StoreError(f"execution id '{record.id}' already exists")
        self._executions[record.id] = replace(record, trust=Trust.of(record.trust))
        if key is not None:
            self._by_idempotency_key[key] = record.id
        return record, True

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        # Checked before anything is written, so a refused batch leaves nothing behind.
        ids: set[str] = set()
        for record in records:
            if record.idempotency_key in self._by_idempotency_key:
                continue  # answered with the existing execution, as create_execution does
            if record.definition_id not in self._definitions:
                raise ExecutionNotFound(f"definition '{record.definition_id}' not found")
            if record.id in self._executions or record.id in ids:
                raise StoreError(f"execution id '{record.id}' already exists")
            ids.add(record.id)
        return [await self.create_execution(record) for record in records]

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        return replace(self._execution(execution_id))

    def _execution(self, execution_id: str) -> ExecutionRecord:
        try:
            return self._executions[execution_id]
        except KeyError:
            raise ExecutionNotFound(f"execution '{execution_id}' not found") from None

    async def update_execution_inputs(
        self,
        execution_id: str,
        inputs: dict[str, Any],
        overrides: dict[str, dict[str, Any]],
        correlation_id: str | None,
    ) -> None:
        record = self._execution(execution_id)
        record.inputs, record.overrides, record.correlation_id = inputs, overrides, correlation_id

    async def distrust_execution(self, execution_id: str) -> None:
        self._execution(execution_id).trust = Trust.UNTRUSTED

    async def trigger_pending(self, trigger: PendingTrigger) -> bool:
        return rules.trigger_pending(self._execution(trigger.execution_id), trigger)

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        after = rules.decode_cursor(flt.cursor) if flt.cursor else None
        page: list[ExecutionRecord] = []
        limit = max(1, flt.limit)
        ordered = sorted(self._matching(flt), key=lambda e: (e.created_at, e.id))
        for e in reversed(ordered):
            if after is not None and (e.created_at, e.id) >= after:
                continue
            page.append(replace(e))
            if len(page) > limit:
                break
        if len(page) > limit:
            del page[limit:]
            last = page[-1]
            return page, rules.encode_cursor(last.created_at, last.id)
        return page, None

    async def count_executions(self, flt: ExecutionFilter) -> dict[ExecutionStatus, int]:
        counts: dict[ExecutionStatus, int] = {}
        for e in self._matching(flt):
            counts[e.status] = counts.get(e.status, 0) + 1
        return counts

    async def count_executions_over_time(
        self, flt: ExecutionFilter, origin: float, bucket: float, buckets: int
    ) -> dict[int, dict[ExecutionStatus, int]]:
        series: dict[int, dict[ExecutionStatus, int]] = {}
        for e in self._matching(flt):
            index = int((e.created_at - origin) // bucket)
            if e.created_at >= origin and index < buckets:
                counts = series.setdefault(index, {})
                counts[e.status] = counts.get(e.status, 0) + 1
        return series

    def _matching(self, flt: ExecutionFilter) -> list[ExecutionRecord]:
        statuses = set(flt.status) if flt.status else None
        definition_ids: set[str] | None = None
        if flt.definition_name is not None:
            definition_ids = {
                d.id for d in self._definitions.values() if d.name == flt.definition_name
            }
        found = []
        for e in self._executions.values():
            if statuses is not None and e.status not in statuses:
                continue
            if definition_ids is not None and e.definition_id not in definition_ids:
                continue
            if flt.definition_id is not None and e.definition_id != flt.definition_id:
                continue
            if flt.id_prefix is not None and not e.id.startswith(flt.id_prefix):
                continue
            if flt.id_suffix is not None and not e.id.endswith(flt.id_suffix):
                continue
            if flt.created_after is not None and e.created_at <= flt.created_after:
                continue
            if flt.created_before is not None and e.created_at >= flt.created_before:
                continue
            if flt.trigger is not None and rules.trigger_of(e) != flt.trigger:
                continue
            if flt.idempotency_keys is not None and e.idempotency_key not in flt.idempotency_keys:
                continue
            found.append(e)
        return found

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        found = [
            replace(e)
            for e in self._executions.values()
            if e.status in _UNFINISHED
            or (
                e.status is ExecutionStatus.PENDING
                and e.owner is not None
                and e.correlation_id is not None
            )
        ]
        found.sort(key=lambda e: (e.created_at, e.id))
        return found

    # ------------------------------------------------------------------ ownership leases
    # No await inside these methods: each runs to the end in one step of the event loop,
    # which is what makes them atomic here.

    async def claim_execution(
        self,
        execution_id: str,
        owner: str,
        lease_until: float,
        expected_owner: str | None,
        now: float,
    ) -> bool:
        record = self._execution(execution_id)
        expired = record.lease_until is not None and record.lease_until < now
        if record.owner != expected_owner and not expired:
            return False
        record.owner, record.lease_until = owner, lease_until
        return True

    async def claim_to_trigger(self, c: TriggerClaim) -> bool:
        eid = c.execution_id
        if took := await self.claim_execution(eid, c.owner, c.lease_until, c.expected_owner, c.now):
            await self.update_execution_inputs(eid, c.inputs, c.overrides, c.correlation_id)
        return took

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        lost: list[str] = []
        for execution_id in dict.fromkeys(execution_ids):
            record = self._executions.get(execution_id)
            if record is None or record.owner != owner:
                lost.append(execution_id)
            else:
                record.lease_until = lease_until
        return lost

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        if execution_ids is None:
            records: Iterable[ExecutionRecord | None] = self._executions.values()
        else:
            records = (self._executions.get(execution_id) for execution_id in execution_ids)
        for record in records:
            if record is not None and record.owner == owner:
                record.owner, record.lease_until = None, None

    # ------------------------------------------------------------------ node runs and events

    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        return [replace(r) for r in self._node_runs.get(execution_id, {}).values()]

    async def get_execution_snapshot(
        self, execution_id: str, event_types: list[str]
    ) -> ExecutionSnapshot:
        record = replace(self._execution(execution_id))
        wanted = set(event_types)
        return ExecutionSnapshot(
            record,
            [replace(r) for r in self._node_runs.get(execution_id, {}).values()],
            [
                replace(event)
                for event in self._events_by_execution.get(execution_id, [])
                if event.type in wanted
            ],
        )

    async def get_outputs(
        self, execution_id: str, node_ids: list[str] | None = None
    ) -> dict[str, Any]:
        runs = self._node_runs.get(execution_id, {})
        wanted = runs.keys() if node_ids is None else node_ids
        outputs: dict[str, Any] = {}
        for node_id in wanted:
            run = runs.get(node_id)
            if run is not None and run.state in _WITH_OUTPUT:
                outputs[node_id] = run.output
        return outputs

    async def commit(self, batch: CommitBatch) -> None:
        self._check(batch)  # everything that can fail fails here, before any change
        correlation = batch.correlation
        for (execution_id, record), event_id, cause in zip(
            batch.records, batch.event_ids, batch.causation, strict=True
        ):
            node = record.node
            if node is not None:
                data: dict[str, Any] | None = rules.node_event_data(record)
                self._apply_node(execution_id, node, record)
            else:
                data = None if record.data is None else dict(record.data)
                rules.apply_execution_record(self._executions[execution_id], record)
            event = EventRecord(
                seq=self._next_seq,
                id=event_id,
                execution_id=execution_id,
                type=record.type,
                at=record.at,
                node_id=node,
                attempt=record.attempt,
                correlation_id=correlation.get(execution_id),
                causation_id=cause,
                data=data,
            )
            self._journal(event)
            if batch.outbox:
                self._to_outbox(event)
        self._owe_follows(batch.follows)
        for request in batch.requests:
            if request.execution_id in self._executions:
                self._journal_request(request)
        for execution_id, result in batch.results.items():
            self._executions[execution_id].result = result
        for row in rules.log_rows(batch) if batch.logs else ():
            self._logs.setdefault(row[0], []).append(LogLineRecord(self._next_log_seq, *row))
            self._next_log_seq += 1
        if batch.audit is not None and batch.records:
            self._audit.append(transition_items(batch), batch.audit)

    def _check(self, batch: CommitBatch) -> None:
        rules.check_batch(batch)
        touched = {execution_id for execution_id, _ in batch.records} | batch.results.keys()
        touched.update(execution_id for execution_id, _ in batch.logs)
        missing = sorted(touched - self._executions.keys())
        if missing:
            raise StoreError(f"commit refers to unknown executions: {', '.join(missing)}")
        rules.check_owners(((eid, self._executions[eid].owner) for eid in touched), batch.owner)
        rules.check_records(batch)

    def _apply_node(self, execution_id: str, node: str, record: Record) -> None:
        runs = self._node_runs.setdefault(execution_id, {})
        previous = runs.get(node)
        if record.has_output:
            output = record.output
        else:
            output = None if previous is None else previous.output
        runs[node] = NodeRunRecord(
            execution_id=execution_id,
            node_id=node,
            state=cast(NodeState, record.state),  # checked in _check
            attempt=record.attempt,
            started_at=record.started_at,
            finished_at=record.finished_at,
            output=output,
            error=record.error,
            wait_reason=record.wait_reason,
            wake_at=record.wake_at,
            compensation=record.extra.get("compensation"),
            updated_at=record.at,
        )

    async def list_events(
        self,
        execution_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
        types: list[str] | None = None,
    ) -> list[EventRecord]:
        if execution_id is None:
            source = self._events
        else:
            source = self._events_by_execution.get(execution_id, [])
        start = bisect.bisect_right(source, after_seq, key=lambda e: e.seq)
        wanted = set(types) if types else None
        found: list[EventRecord] = []
        for event in source[start:]:
            if wanted is not None and event.type not in wanted:
                continue
            found.append(replace(event))
            if len(found) >= limit:
                break
        return found

    async def list_node_logs(self, flt: LogFilter) -> list[LogLineRecord]:
        source = self._logs.get(flt.execution_id, [])
        start = bisect.bisect_right(source, flt.after_seq, key=lambda line: line.seq)
        found: list[LogLineRecord] = []
        for line in source[start:]:
            if flt.node_id is not None and line.node_id != flt.node_id:
                continue
            if flt.attempt is not None and line.attempt != flt.attempt:
                continue
            found.append(replace(line))
            if len(found) >= flt.limit:
                break
        return found

    async def request_control(
        self,
        execution_id: str,
        event_id: str,
        request: dict[str, Any],
        at: float,
        audit: AuditSigner | None = None,
    ) -> int:
        if execution_id not in self._executions:
            raise ExecutionNotFound(f"execution '{execution_id}' not found")
        event = self._journal_request(
            JournalRequest(execution_id, execution_id, event_id, request, at)
        )
        if audit is not None:
            by = request.get("requested_by")
            owner = by if isinstance(by, str) else None
            verb = str(request.get("verb"))
            self._audit.append(request_items(execution_id, event_id, verb, at, owner), audit)
        return event.seq

    def _journal_request(self, request: JournalRequest) -> EventRecord:
        event = EventRecord(
            self._next_seq,
            request.event_id,
            request.execution_id,
            rules.CONTROL_REQUESTED,
            request.at,
        )
        event.data = json.loads(json.dumps(request.request))
        self._journal(event)
        return event

    def _journal(self, event: EventRecord) -> None:
        """Append ``event`` (its seq is the next one) to the journal."""
        self._next_seq += 1
        self._events.append(event)
        self._events_by_execution.setdefault(event.execution_id, []).append(event)

    async def journal_head(self) -> int:
        return self._next_seq - 1

    async def touched_since(self, marks: Marks | None) -> tuple[Marks, set[str] | None]:
        now = (self._next_seq - 1, self._next_log_seq - 1)
        if marks is None:
            return now, None
        touched = {e.execution_id for e in self._events if marks[0] < e.seq <= now[0]}
        for execution_id, lines in self._logs.items():
            if any(marks[1] < line.seq <= now[1] for line in lines):
                touched.add(execution_id)
        return now, touched if len(touched) <= TOUCHED_LIMIT else None

    # ------------------------------------------------------------------ audit trail

    async def append_audit(
        self, entries: list[AuditEntry], signer: AuditSigner
    ) -> list[AuditRecord]:
        return self._audit.append(entry_items(entries), signer)

    async def list_audit(self, flt: AuditFilter) -> list[AuditRecord]:
        return self._audit.select(flt)

    async def audit_head(self) -> StoredHead | None:
        return self._audit.head

    # ------------------------------------------------------------------ retention

    async def purge_executions(
        self, finished_before: float, signer: AuditSigner | None, actor: str | None, now: float
    ) -> int:
        doomed = {
            e.id
            for e in self._executions.values()
            if e.status in FINAL_EXECUTION_STATES and _age_of(e) < finished_before
        }
        self._drop_dead_deliveries(finished_before)  # as the SQL store does
        for execution_id in doomed:
            record = self._executions.pop(execution_id)
            if record.idempotency_key is not None:
                self._by_idempotency_key.pop(record.idempotency_key, None)
            self._node_runs.pop(execution_id, None)
            self._events_by_execution.pop(execution_id, None)
            self._logs.pop(execution_id, None)
        if doomed:
            self._events = [e for e in self._events if e.execution_id not in doomed]
        if signer is not None:
            self._audit.append(purge_items(len(doomed), finished_before, actor, now), signer)
        return len(doomed)
