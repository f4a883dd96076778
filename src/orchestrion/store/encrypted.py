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
- the execution's inputs and trigger-time overrides, its result and its error's text.

Executions that are not classified are written as they are: the only cost for them is one
dictionary lookup per run of records in a commit. Reading opens any envelope it meets,
whatever the classification says now, so a policy change or a key added later never strands a
value; an envelope whose key is not in the ring raises ``DecryptionError`` naming the key id.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any

from orchestrion.core.events import Record
from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import ExecutionNotFound
from orchestrion.governance.encryption import (
    DecryptionError,
    KeyRing,
    decrypt_value,
    encrypt_value,
    is_encrypted,
)
from orchestrion.store.base import (
    CommitBatch,
    DefinitionRecord,
    EventRecord,
    ExecutionFilter,
    ExecutionRecord,
    NodeRunRecord,
    Store,
)

__all__ = [
    "EncryptedStore",
    "context",
    "open_error",
    "open_journal_data",
    "seal_error",
]

# Journal data keys that say what happened, not what a handler produced: left readable.
_PLAIN_DATA_KEYS = frozenset({"reason", "delay", "node", "nodes"})
# Error keys that say what kind of failure it was: left readable; the rest is sealed.
_PLAIN_ERROR_KEYS = frozenset({"category", "type", "transient"})
# The category of a node error that quotes a child execution's error.
_CHILD_FAILED = "child_failed"
_CACHE_LIMIT = 100_000


def context(execution_id: str, node_id: str | None, field: str) -> str:
    """The associated data binding an envelope to its row and field."""
    return f"orchestrion\x1f{execution_id}\x1f{node_id or ''}\x1f{field}"


def seal_error(ring: KeyRing, error: dict[str, Any], ctx: str) -> dict[str, Any]:
    """``error`` with everything but its kind (category, type, transient) in one envelope
    under ``message``."""
    if is_encrypted(error.get("message")):
        return error
    hidden = {k: v for k, v in error.items() if k not in _PLAIN_ERROR_KEYS}
    sealed = {k: v for k, v in error.items() if k in _PLAIN_ERROR_KEYS}
    sealed["message"] = encrypt_value(ring, hidden, ctx)
    return sealed


def open_error(ring: KeyRing | None, error: Any, ctx: str) -> Any:
    if not isinstance(error, dict) or not is_encrypted(error.get("message")):
        return error
    hidden = _decrypt(ring, error["message"], ctx)
    opened = {k: v for k, v in error.items() if k != "message"}
    opened.update(hidden if isinstance(hidden, dict) else {"message": hidden})
    return opened


def open_journal_data(
    ring: KeyRing | None, data: dict[str, Any], execution_id: str, node_id: str | None
) -> dict[str, Any]:
    """Journal data with its sealed parts opened (see ``EncryptedStore._seal_record``)."""
    if "error" not in data and "sealed" not in data:
        return data
    opened = dict(data)
    if "error" in opened:
        opened["error"] = open_error(ring, opened["error"], context(execution_id, node_id, "error"))
    sealed = opened.get("sealed")
    if is_encrypted(sealed):
        del opened["sealed"]
        hidden = _decrypt(ring, sealed, context(execution_id, node_id, "data"))
        if isinstance(hidden, dict):
            opened.update(hidden)
    return opened


def _decrypt(ring: KeyRing | None, value: Any, ctx: str) -> Any:
    if ring is None:
        raise DecryptionError(
            f"a stored value is encrypted with key {value.get('kid')!r} but no encryption key"
            " is configured (ORCHESTRION_ENCRYPTION_KEYS)"
        )
    return decrypt_value(ring, value, ctx)


def _sealed_error(error: Any) -> bool:
    return isinstance(error, dict) and is_encrypted(error.get("message"))


def _open(ring: KeyRing | None, value: Any, ctx: str) -> Any:
    return _decrypt(ring, value, ctx) if is_encrypted(value) else value


class _Classification:
    """Which executions are classified (see the module docstring), cached.

    An execution's own answer comes from its definition (definitions never change) and its
    parent's; it can only change from False to True, when the execution starts or meets a
    classified child (``flip``). The first sealed value written after such a flip stays in
    the store as its mark: an execution met again after a restart that is not classified by
    its definition or parent is looked at once more (``_marked``). The execution cache is
    bounded (oldest entries go first) and refilled from the store on a miss.
    """

    def __init__(self, inner: Store, encrypts: Callable[[str], bool]) -> None:
        self._inner = inner
        self._encrypts = encrypts
        self._by_definition: dict[str, bool] = {}
        self._by_execution: dict[str, bool] = {}

    def known(self, execution_id: str) -> bool | None:
        return self._by_execution.get(execution_id)

    async def of(self, execution_id: str) -> bool:
        classified = self._by_execution.get(execution_id)
        if classified is None:
            try:
                record = await self._inner.get_execution(execution_id)
            except ExecutionNotFound:
                return False  # the adapter refuses the commit with its own error
            classified = await self.of_record(record, stored=True)
        return classified

    async def of_record(self, record: ExecutionRecord, *, stored: bool = False) -> bool:
        """``stored``: the record was read from the store (it may carry a mark)."""
        classified = self._by_execution.get(record.id)
        if classified is not None:
            return classified
        classified = await self._definition(record.definition_id)
        if not classified and record.parent_execution_id:
            classified = await self.of(record.parent_execution_id)
        if not classified and stored and record.status is not ExecutionStatus.PENDING:
            classified = await self._marked(record.id)
        self.remember(record.id, classified)
        return classified

    def flip(self, execution_id: str) -> None:
        """From now on ``execution_id`` is classified (it met a classified child)."""
        self.remember(execution_id, True)

    def remember(self, execution_id: str, classified: bool) -> None:
        cache = self._by_execution
        if execution_id not in cache and len(cache) >= _CACHE_LIMIT:
            del cache[next(iter(cache))]
        cache[execution_id] = classified

    async def _marked(self, execution_id: str) -> bool:
        """Whether an earlier process sealed something of this execution (it had flipped)."""
        for run in await self._inner.get_node_runs(execution_id):
            if is_encrypted(run.output) or _sealed_error(run.error):
                return True
        return False

    async def _definition(self, definition_id: str) -> bool:
        found = self._by_definition.get(definition_id)
        if found is None:
            spec = (await self._inner.get_definition(definition_id)).spec
            listed = (spec.get("dag") or {}).get("nodes") or ()
            found = self._by_definition[definition_id] = any(
                self._encrypts(str(n.get("data_classification") or "public")) for n in listed
            )
        return found


def _child_ids(output: dict[str, Any]) -> list[str]:
    """The child executions whose results ``output`` carries: a ``workflow`` node's output,
    or a ``map`` of sub-workflows' (``{"results": [...]}``; a map also starts its children
    again after a crash, which flips its execution at once)."""
    child = output.get("child_execution_id")
    if isinstance(child, str):
        return [child]
    items = output.get("results")
    if not isinstance(items, list):
        return []
    return [
        item["child_execution_id"]
        for item in items
        if isinstance(item, dict) and isinstance(item.get("child_execution_id"), str)
    ]


class EncryptedStore:
    """A ``Store`` that seals classified values before ``inner`` sees them; see the module
    docstring. Methods it does not define (an adapter's own) are ``inner``'s."""

    def __init__(self, inner: Store, ring: KeyRing | None, encrypts: Callable[[str], bool]) -> None:
        self.inner = inner
        self.ring = ring
        self._classes = _Classification(inner, encrypts)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def classified(self, execution_id: str) -> bool:
        """Whether the execution's values are sealed (True when not known yet: the safe side)."""
        classified = self._classes.known(execution_id)
        return classified is None or classified

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

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None:
        return await self.inner.find_definition_by_hash(name, content_hash)

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        return await self.inner.list_definitions(name, limit, offset)

    async def next_version(self, name: str) -> str:
        return await self.inner.next_version(name)

    # ------------------------------------------------------------------ executions

    async def create_execution(self, record: ExecutionRecord) -> tuple[ExecutionRecord, bool]:
        return (await self.create_executions([record]))[0]

    async def create_executions(
        self, records: list[ExecutionRecord]
    ) -> list[tuple[ExecutionRecord, bool]]:
        sealed = [await self._sealed_execution(record) for record in records]
        results = await self.inner.create_executions(sealed)
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

    async def list_executions(
        self, flt: ExecutionFilter
    ) -> tuple[list[ExecutionRecord], str | None]:
        page, cursor = await self.inner.list_executions(flt)
        return [self._open_execution(r) for r in page], cursor

    async def unfinished_executions(self) -> list[ExecutionRecord]:
        return [self._open_execution(r) for r in await self.inner.unfinished_executions()]

    def _open_execution(self, record: ExecutionRecord) -> ExecutionRecord:
        inputs, overrides, result, error = (
            record.inputs,
            record.overrides,
            record.result,
            record.error,
        )
        if not (
            is_encrypted(inputs)
            or is_encrypted(overrides)
            or is_encrypted(result)
            or _sealed_error(error)
        ):
            return record
        ring, eid = self.ring, record.id
        return replace(
            record,
            inputs=_open(ring, inputs, context(eid, None, "inputs")),
            overrides=_open(ring, overrides, context(eid, None, "overrides")),
            result=_open(ring, result, context(eid, None, "result")),
            error=open_error(ring, error, context(eid, None, "error")),
        )

    # ------------------------------------------------------------------ ownership

    async def claim_execution(
        self,
        execution_id: str,
        owner: str,
        lease_until: float,
        expected_owner: str | None,
        now: float,
    ) -> bool:
        return await self.inner.claim_execution(
            execution_id, owner, lease_until, expected_owner, now
        )

    async def renew_leases(
        self, owner: str, execution_ids: list[str], lease_until: float
    ) -> list[str]:
        return await self.inner.renew_leases(owner, execution_ids, lease_until)

    async def release_executions(self, owner: str, execution_ids: list[str] | None = None) -> None:
        await self.inner.release_executions(owner, execution_ids)

    # ------------------------------------------------------------------ node runs and events

    async def get_node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        runs = await self.inner.get_node_runs(execution_id)
        ring = self.ring
        opened: list[NodeRunRecord] = []
        for run in runs:
            output, error = run.output, run.error
            if is_encrypted(output) or _sealed_error(error):
                node = run.node_id
                run = replace(
                    run,
                    output=_open(ring, output, context(execution_id, node, "output")),
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
                outputs[node] = _decrypt(ring, output, context(execution_id, node, "output"))
        return outputs

    async def list_events(
        self,
        execution_id: str | None = None,
        after_seq: int = 0,
        limit: int = 1000,
        types: list[str] | None = None,
    ) -> list[EventRecord]:
        events = await self.inner.list_events(execution_id, after_seq, limit, types)
        ring = self.ring
        for i, event in enumerate(events):
            data = event.data
            if data is not None and ("error" in data or "sealed" in data):
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
            sealed[i] = (eid, self._seal_record(ring, eid, record))
        results = batch.results
        sealed_results: dict[str, Any] | None = None
        for eid, result in results.items():
            if await classes.of(eid) and result is not None:
                if sealed_results is None:
                    sealed_results = dict(results)
                sealed_results[eid] = encrypt_value(ring, result, context(eid, None, "result"))
        if sealed is None and sealed_results is None:
            await self.inner.commit(batch)
            return
        # ``replace`` keeps every other field of the batch, including ones added later.
        await self.inner.commit(
            replace(
                batch,
                records=records if sealed is None else sealed,
                results=results if sealed_results is None else sealed_results,
            )
        )

    async def _meets_classified_child(self, record: Record) -> bool:
        """Whether ``record`` carries what a classified child execution returned: its result
        in an output, or its error quoted in a ``child_failed`` error (taken as classified:
        which child failed is only in the message)."""
        error = record.error
        if error is not None and error.get("category") == _CHILD_FAILED:
            return True
        if not record.has_output or type(record.output) is not dict:
            return False
        for child in _child_ids(record.output):
            if await self._classes.of(child):
                return True
        return False

    @staticmethod
    def _seal_record(ring: KeyRing, execution_id: str, record: Record) -> Record:
        """A copy of ``record`` with its data-bearing fields sealed (listeners keep the
        plaintext original)."""
        node = record.node
        error_ctx = context(execution_id, node, "error")
        changes: dict[str, Any] = {}
        if record.has_output:
            changes["output"] = encrypt_value(
                ring, record.output, context(execution_id, node, "output")
            )
        sealed_error: dict[str, Any] | None = None
        if record.error is not None:
            sealed_error = seal_error(ring, record.error, error_ctx)
            changes["error"] = sealed_error
        data = record.data
        if data:
            plain: dict[str, Any] = {}
            hidden: dict[str, Any] = {}
            for key, value in data.items():
                if key == "error" and isinstance(value, dict):
                    # The run's own error is usually the same dict: seal it once.
                    same = value is record.error and sealed_error is not None
                    plain[key] = sealed_error if same else seal_error(ring, value, error_ctx)
                elif key in _PLAIN_DATA_KEYS and (key != "reason" or _system_reason(record, value)):
                    plain[key] = value
                else:
                    hidden[key] = value
            if hidden:
                plain["sealed"] = encrypt_value(ring, hidden, context(execution_id, node, "data"))
            changes["data"] = plain
        return _copy_record(record, changes) if changes else record


_RECORD_FIELDS = tuple(f.name for f in fields(Record))


def _copy_record(record: Record, changes: dict[str, Any]) -> Record:
    """``dataclasses.replace(record, **changes)`` for a third of its cost (it runs
    ``__init__`` again): every record that carries a value in a classified execution is
    copied on its way to the store."""
    copy = Record.__new__(Record)
    for name in _RECORD_FIELDS:
        setattr(copy, name, getattr(record, name))
    for name, value in changes.items():
        setattr(copy, name, value)
    return copy


def _system_reason(record: Record, value: Any) -> bool:
    """Whether a journal ``reason`` is the engine's (a skip, a cancellation, a wait's kind),
    not a key of the wait data a handler gave, which ``node.waiting`` data may hold too."""
    return record.wait_reason is None or value == record.wait_reason
