"""Encryption at rest: a ``Store`` decorator that seals classified values on their way in.

``EncryptedStore(inner, ring, encrypts)`` wraps any store adapter. Adapters keep writing and
reading JSON as before; what they are handed is already sealed (AES-GCM envelopes from
``encryption.py``) and what they return is opened here, so the engine, the API and the CLI only
ever see plaintext.

The unit is the execution. A *classified execution* is one whose workflow has a node of an
encrypted classification, or whose parent execution is classified (a child receives its
parent's data as inputs), or that started a classified child (the child's result comes back
into one of its nodes: from then on it is classified; see ``_Classification``). Every node of a
classified execution can carry its inputs: any handler is given the execution's inputs and the
outputs it reads, so ``public`` said of a node is a statement for masking (who may see its
output), not a proof that it holds nothing. For a classified execution, everything that
carries data is sealed, each envelope bound to its row by ``context(execution, node, field)``:

- every node's output (``input`` and ``output`` nodes, completions, approval decisions, woken
  waits), the text of its errors (message, traceback and whatever else a handler put in;
  ``category``, ``type`` and ``transient`` stay readable for retries and metrics), and the
  data its journal events carry (an approval's rendered message, under ``sealed``);
- the execution's inputs and trigger-time overrides, its result and its error's text;
- the message of every log line its attempts wrote (``node_logs``; level, logger and time
  stay readable), stored as ``SEALED_LOG`` followed by the envelope's JSON.

Unclassified executions are written as they are (one dictionary lookup per run of records in
a commit). Reading opens any envelope it meets, whatever the classification says now, so no
policy change or key added later strands a value; a key not in the ring is ``DecryptionError``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from orchestrion.core.events import NodeLogged, Record
from orchestrion.core.states import ExecutionStatus
from orchestrion.governance.encryption import KeyRing, encrypt_value, is_encrypted
from orchestrion.governance.runtime import Governance
from orchestrion.store.audit import AuditEntry, AuditFilter, AuditRecord, AuditSigner, StoredHead
from orchestrion.store.base import (
    CommitBatch,
    DefinitionRecord,
    EventRecord,
    ExecutionFilter,
    ExecutionRecord,
    ExecutionSnapshot,
    LogFilter,
    LogLineRecord,
    NodeRunRecord,
    Store,
    TriggerClaim,
)
from orchestrion.store.classification import Classification
from orchestrion.store.journal_marks import Marks
from orchestrion.store.outbox import ForwardOutbox
from orchestrion.store.pending_trigger import PendingTrigger
from orchestrion.store.schedules import ForwardSchedules
from orchestrion.store.sealing import (
    CHILD_FAILED,
    child_ids,
    context,
    decrypt,
    open_error,
    open_journal_data,
    open_value,
    seal_error,
    seal_journal_data,
    seal_record,
    sealed_error,
)
from orchestrion.store.sessions import ForwardSessions

__all__ = [
    "SEALED_LOG",
    "EncryptedStore",
    "context",
    "open_error",
    "open_journal_data",
    "protect",
    "seal_error",
]


SEALED_LOG: Final = "\x1esealed:"
"""How a sealed log message begins; a plain one that begins so is stored with its first
character replaced, so that no line can pass for an envelope."""


def protect(store: Store, governance: Governance) -> Store:
    """``store`` behind encryption at rest, or as it is when the policy encrypts no
    classification. Wrapped even without a key, so a value encrypted earlier is refused by
    name instead of shown as an envelope."""
    if isinstance(store, EncryptedStore) or not governance.policy.encryption.classifications:
        return store
    return EncryptedStore(store, governance.keyring, governance.encrypts)


class EncryptedStore(ForwardSchedules, ForwardOutbox, ForwardSessions):
    """A ``Store`` that seals classified values before ``inner`` sees them; see the module
    docstring. Every ``Store`` method is its own: those where values pass seal or open them,
    the others hand over to ``inner`` by choice (a test holds it to the protocol)."""

    def __init__(self, inner: Store, ring: KeyRing | None, encrypts: Callable[[str], bool]) -> None:
        self.inner = inner
        self.ring = ring
        self._classes = Classification(inner, encrypts)

    def classified(self, execution_id: str) -> bool:
        """Whether the execution's values are sealed (True when not known yet: the safe side)."""
        classified = self._classes.known(execution_id)
        return classified is None or classified

    def forward_outbox(self) -> Store:
        # Outbox entries carry the journal's data as stored (sealed where classified): the
        # publisher sends a sealed value as a mark, never opened (sinks/envelope.py).
        return self.inner

    def forward_sessions(self) -> Store:
        return self.inner  # a sign-out holds a nonce and an expiry: nothing to seal

    def forward_to(self) -> Store:
        return self.inner  # schedules carry no classified values: nothing to seal

    # ------------------------------------------------------------------ lifecycle, definitions

    async def open(self) -> None:
        await self.inner.open()

    async def close(self) -> None:
        await self.inner.close()

    async def put_definition(self, record: DefinitionRecord) -> DefinitionRecord:
        return await self.inner.put_definition(record)

    async def get_definition(self, definition_id: str) -> DefinitionRecord:
        return await self.inner.get_definition(definition_id)

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        return await self.inner.find_definition(name, version)

    async def set_definition_status(
        self, name: str, version: str, status: str, at: float, by: str | None = None
    ) -> DefinitionRecord:
        return await self.inner.set_definition_status(name, version, status, at, by)

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None:
        return await self.inner.find_definition_by_hash(name, content_hash)

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        return await self.inner.list_definitions(name, limit, offset)

    async def definition_heads(self) -> list[tuple[str, str]]:
        return await self.inner.definition_heads()

    async def next_version(self, name: str) -> str:
        return await self.inner.next_version(name)

    # ------------------------------------------------------------------ executions

    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        # The inner store's own single insert: it may need no transaction (sql/core.py).
        result = await self.inner.create_execution(await self._sealed_execution(record))
        return (await self._created([record], [result]))[0]

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        sealed = [await self._sealed_execution(record) for record in records]
        return await self._created(records, await self.inner.create_executions(sealed))

    async def _created(
        self, records: list[ExecutionRecord], results: list[tuple[ExecutionRecord, bool]]
    ) -> list[tuple[ExecutionRecord, bool]]:
        """What the callers get for ``records`` the inner store answered with ``results``."""
        classes = self._classes
        for record, (stored, created) in zip(records, results, strict=True):
            parent = record.parent_execution_id
            if parent is None or self.ring is None:
                continue
            # A classified child's result comes back into its parent, which is classified
            # from now on (a child found again by its key counts too: a re-run after a crash).
            child = record if created else stored
            if await classes.of_record(child, stored=not created):
                classes.flip(parent)
        return [
            # A created record was stored as given: the caller's plaintext is what it holds.
            (record, True) if created else (self._open_execution(stored), False)
            for record, (stored, created) in zip(records, results, strict=True)
        ]

    async def _sealed_execution(self, record: ExecutionRecord) -> ExecutionRecord:
        """``record`` as stored: its inputs, overrides, result and error sealed when its
        definition's classification is encrypted at rest; else ``record`` itself."""
        ring = self.ring
        if ring is None or not await self._classes.of_record(record):
            return record
        eid = record.id
        return replace(
            record,
            inputs=encrypt_value(ring, record.inputs, context(eid, None, "inputs")),
            overrides=self._seal_overrides(ring, eid, record.overrides),
            result=None
            if record.result is None
            else encrypt_value(ring, record.result, context(eid, None, "result")),
            error=None
            if record.error is None
            else seal_error(ring, record.error, context(eid, None, "error")),
        )

    @staticmethod
    def _seal_overrides(
        ring: KeyRing, execution_id: str, overrides: dict[str, dict[str, Any]]
    ) -> dict[str, Any]:
        if not overrides:
            return overrides
        return encrypt_value(ring, overrides, context(execution_id, None, "overrides"))

    async def get_execution(self, execution_id: str) -> ExecutionRecord:
        return self._open_execution(await self.inner.get_execution(execution_id))

    async def update_execution_inputs(
        self,
        execution_id: str,
        inputs: dict[str, Any],
        overrides: dict[str, dict[str, Any]],
        correlation_id: str | None,
    ) -> None:
        ring = self.ring
        if ring is not None and await self._classes.of(execution_id):
            inputs = encrypt_value(ring, inputs, context(execution_id, None, "inputs"))
            overrides = self._seal_overrides(ring, execution_id, overrides)
        await self.inner.update_execution_inputs(execution_id, inputs, overrides, correlation_id)

    async def distrust_execution(self, execution_id: str) -> None:
        await self.inner.distrust_execution(execution_id)  # trust is no value: nothing to seal

    async def trigger_pending(self, trigger: PendingTrigger) -> bool:
        if (ring := self.ring) is not None and await self._classes.of(eid := trigger.execution_id):
            inputs = encrypt_value(ring, trigger.inputs, context(eid, None, "inputs"))
            overrides = self._seal_overrides(ring, eid, trigger.overrides)
            trigger = replace(trigger, inputs=inputs, overrides=overrides)
        return await self.inner.trigger_pending(trigger)

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        page, cursor = await self.inner.list_executions(flt)
        return [self._open_execution(r) for r in page], cursor

    async def count_executions(self, flt: ExecutionFilter) -> dict[ExecutionStatus, int]:
        return await self.inner.count_executions(flt)

    async def count_executions_over_time(
        self, flt: ExecutionFilter, origin: float, bucket: float, buckets: int
    ) -> dict[int, dict[ExecutionStatus, int]]:
        return await self.inner.count_executions_over_time(flt, origin, bucket, buckets)

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        return [self._open_execution(r) for r in await self.inner.unfinished_executions()]

    def _open_execution(self, record: ExecutionRecord) -> ExecutionRecord:
        inputs, overrides = record.inputs, record.overrides
        result, error = record.result, record.error
        sealed = is_encrypted(inputs) or is_encrypted(overrides) or is_encrypted(result)
        if not (sealed or sealed_error(error)):
            return record
        ring, eid = self.ring, record.id
        return replace(
            record,
            inputs=open_value(ring, inputs, context(eid, None, "inputs")),
            overrides=open_value(ring, overrides, context(eid, None, "overrides")),
            result=open_value(ring, result, context(eid, None, "result")),
            error=open_error(ring, error, context(eid, None, "error")),
        )

    # ------------------------------------------------------------------ ownership

    async def claim_execution(
        self, execution_id: str, owner: str, lease_until: float, expected_owner: str | None,
        now: float,
    ) -> bool:  # fmt: skip
        return await self.inner.claim_execution(
            execution_id, owner, lease_until, expected_owner, now
        )

    async def claim_to_trigger(self, claim: TriggerClaim) -> bool:
        if (ring := self.ring) is not None and await self._classes.of(eid := claim.execution_id):
            sealed = encrypt_value(ring, claim.inputs, context(eid, None, "inputs"))
            claim = replace(
                claim, inputs=sealed, overrides=self._seal_overrides(ring, eid, claim.overrides)
            )
        return await self.inner.claim_to_trigger(claim)

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        return await self.inner.renew_leases(owner, execution_ids, lease_until)

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        await self.inner.release_executions(owner, execution_ids)

    # ------------------------------------------------------------------ node runs and events

    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        return self._open_runs(execution_id, await self.inner.get_node_runs(execution_id))

    async def get_execution_snapshot(
        self, execution_id: str, event_types: list[str]
    ) -> ExecutionSnapshot:
        found = await self.inner.get_execution_snapshot(execution_id, event_types)
        return ExecutionSnapshot(
            self._open_execution(found.record),
            self._open_runs(execution_id, found.runs),
            self._open_events(found.events),
        )

    def _open_runs(self, execution_id: str, runs: list[NodeRunRecord]) -> list[NodeRunRecord]:
        ring = self.ring
        opened: list[NodeRunRecord] = []
        for run in runs:
            output, error = run.output, run.error
            if is_encrypted(output) or sealed_error(error):
                node = run.node_id
                run = replace(
                    run,
                    output=open_value(ring, output, context(execution_id, node, "output")),
                    error=open_error(ring, error, context(execution_id, node, "error")),
                )
            opened.append(run)
        return opened

    async def get_outputs(
        self, execution_id: str, node_ids: list[str] | None = None
    ) -> dict[str, Any]:
        outputs = await self.inner.get_outputs(execution_id, node_ids)
        ring = self.ring
        for node, output in outputs.items():
            if is_encrypted(output):
                outputs[node] = decrypt(ring, output, context(execution_id, node, "output"))
        return outputs

    async def list_events(
        self, execution_id: str | None = None, after_seq: int = 0, limit: int = 1000,
        types: list[str] | None = None,
    ) -> list[EventRecord]:  # fmt: skip
        found = await self.inner.list_events(execution_id, after_seq, limit, types)
        return self._open_events(found)

    def _open_events(self, events: list[EventRecord]) -> list[EventRecord]:
        ring = self.ring
        for i, event in enumerate(events):
            if (data := event.data) is not None and ("error" in data or "sealed" in data):
                opened = open_journal_data(ring, data, event.execution_id, event.node_id)
                if opened is not data:
                    events[i] = replace(event, data=opened)
        return events

    async def commit(self, batch: CommitBatch) -> None:
        ring = self.ring
        if ring is None or not batch:
            await self.inner.commit(batch)
            return
        classes = self._classes
        known = classes.known
        records = batch.records
        sealed: list[tuple[str, Record]] | None = None
        last: str | None = None
        classified = False
        for i, (eid, record) in enumerate(records):
            if eid != last:  # a turn's records come grouped by execution
                last = eid
                found = known(eid)
                classified = await classes.of(eid) if found is None else found
            if not classified:
                # The common case. Only what a child execution returned can make it classified:
                # an error, or an output that is a dict (checked here, without a coroutine).
                if record.error is None and not (record.has_output and type(record.output) is dict):
                    continue
                if not await self._meets_classified_child(record):
                    continue
                classes.flip(eid)
                classified = True
            if sealed is None:
                sealed = list(records)
            sealed[i] = (eid, seal_record(ring, eid, record))
        sealed_logs = await self._seal_logs(ring, batch.logs) if batch.logs else None
        results = batch.results
        sealed_results: dict[str, Any] | None = None
        for eid, result in results.items():
            if await classes.of(eid) and result is not None:
                if sealed_results is None:
                    sealed_results = dict(results)
                sealed_results[eid] = encrypt_value(ring, result, context(eid, None, "result"))
        if sealed is None and sealed_results is None and sealed_logs is None:
            await self.inner.commit(batch)
            return
        # ``replace`` keeps every other field of the batch, including ones added later.
        await self.inner.commit(
            replace(
                batch,
                records=records if sealed is None else sealed,
                results=results if sealed_results is None else sealed_results,
                logs=batch.logs if sealed_logs is None else sealed_logs,
            )
        )

    async def _seal_logs(
        self, ring: KeyRing, logs: list[tuple[str, NodeLogged]]
    ) -> list[tuple[str, NodeLogged]] | None:
        """The lines with their messages sealed for classified executions (and plain ones
        that look sealed defused); None when nothing changes."""
        changed = False
        out: list[tuple[str, NodeLogged]] = []
        for eid, logged in logs:
            classified = await self._classes.of(eid)
            lines = []
            for line in logged.lines:
                message = line.get("message") if isinstance(line, dict) else None
                if not isinstance(message, str):
                    lines.append(line)
                    continue
                if classified:
                    envelope = encrypt_value(ring, message, context(eid, logged.node, "log"))
                    message = SEALED_LOG + json.dumps(envelope, separators=(",", ":"))
                elif message.startswith(SEALED_LOG[0]):
                    message = "\ufffd" + message[1:]
                else:
                    lines.append(line)
                    continue
                lines.append({**line, "message": message})
                changed = True
            out.append((eid, replace(logged, lines=tuple(lines))))
        return out if changed else None

    async def list_node_logs(self, flt: LogFilter) -> list[LogLineRecord]:
        lines = await self.inner.list_node_logs(flt)
        ring = self.ring
        for i, line in enumerate(lines):
            if line.message.startswith(SEALED_LOG):
                envelope = json.loads(line.message[len(SEALED_LOG) :])
                ctx = context(line.execution_id, line.node_id, "log")
                lines[i] = replace(line, message=str(decrypt(ring, envelope, ctx)))
        return lines

    async def _meets_classified_child(self, record: Record) -> bool:
        """Whether ``record`` carries what a classified child execution returned: its result
        in an output, or its error quoted in a ``child_failed`` error (taken as classified:
        which child failed is only in the message)."""
        error = record.error
        if error is not None and error.get("category") == CHILD_FAILED:
            return True
        if not record.has_output or type(record.output) is not dict:
            return False
        for child in child_ids(record.output):
            if await self._classes.of(child):
                return True
        return False

    async def request_control(
        self, execution_id: str, event_id: str, request: dict[str, Any], at: float,
        audit: AuditSigner | None = None,
    ) -> int:  # fmt: skip
        """The request is journal data: what it says of the execution's own data (who
        decided, their comment) is sealed like a record's data; ``list_events`` opens it."""
        ring = self.ring
        if ring is not None and await self._classes.of(execution_id):
            request = seal_journal_data(ring, request, execution_id)
        return await self.inner.request_control(execution_id, event_id, request, at, audit)

    async def journal_head(self) -> int:
        return await self.inner.journal_head()  # a number

    async def touched_since(self, marks: Marks | None) -> tuple[Marks, set[str] | None]:
        return await self.inner.touched_since(marks)  # numbers and ids

    # ------------------------------------------------------------------ audit trail, retention
    # Audit records are signed as written and hold no values (ids, actions, categories, counts):
    # handed over as they are, and read back so.

    async def append_audit(
        self, entries: list[AuditEntry], signer: AuditSigner
    ) -> list[AuditRecord]:
        return await self.inner.append_audit(entries, signer)

    async def list_audit(self, flt: AuditFilter) -> list[AuditRecord]:
        return await self.inner.list_audit(flt)

    async def audit_head(self) -> StoredHead | None:
        return await self.inner.audit_head()

    async def purge_executions(
        self, finished_before: float, signer: AuditSigner | None, actor: str | None, now: float
    ) -> int:
        return await self.inner.purge_executions(finished_before, signer, actor, now)
