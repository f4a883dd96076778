"""Audit records as the stores keep them: entries in, sealed records out, and the filters.

An ``AuditEntry`` is what happened (action, who, when, about what); a store seals entries with
an ``AuditSigner`` after the head it reads under its write lock (``seal_items``), so the
chain never forks, and keeps the head aside in a one-row table updated in the same
transaction. ``AuditRecord.chain_fields`` is exactly the dict that was signed, so a record read
back (from a table or an export line) verifies with ``audit_chain.verify``.

The engine's commit batches carry a signer: each journal record of the batch then becomes an
audit record too (``transition_items``), in the commit's own transaction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring as _string
from typing import TYPE_CHECKING, Any

from orchestrion.governance.audit_chain import ChainHead

if TYPE_CHECKING:
    from orchestrion.governance.encryption import KeyRing
    from orchestrion.store.base import CommitBatch

__all__ = [
    "PURGE_ACTION",
    "AuditEntry",
    "AuditFilter",
    "AuditItem",
    "AuditRecord",
    "AuditRow",
    "AuditSigner",
    "StoredHead",
    "entry_items",
    "purge_items",
    "record_of",
    "seal_items",
    "transition_items",
]

PURGE_ACTION = "retention.purge"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One thing to audit. ``details`` holds JSON values with string keys only."""

    action: str
    at: float
    actor: str | None = None
    execution_id: str | None = None
    node_id: str | None = None
    outcome: str | None = None
    details: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A sealed audit record: the entry's fields plus its place in the chain."""

    seq: int
    at: float
    action: str
    actor: str | None
    execution_id: str | None
    node_id: str | None
    outcome: str | None
    details: dict[str, Any] | None
    prev_hash: str
    key_id: str
    hash: str
    # The stored ``details`` text when it is not the canonical JSON that was signed (a
    # duplicate key, another spelling of the same value): such a record does not verify.
    stored_details: str | None = None

    def signed_fields(self) -> dict[str, Any]:
        """What ``audit_chain.verify`` checks: the ``chain_fields``, with the stored text in
        place of ``details`` when that text is not what was signed."""
        fields = self.chain_fields()
        if self.stored_details is not None:
            fields["details"] = self.stored_details
        return fields

    def chain_fields(self) -> dict[str, Any]:
        """The signed dict (what ``audit_chain.verify`` checks), also the export format."""
        return {
            "seq": self.seq,
            "at": self.at,
            "action": self.action,
            "actor": self.actor,
            "execution_id": self.execution_id,
            "node_id": self.node_id,
            "outcome": self.outcome,
            "details": self.details,
            "prev_hash": self.prev_hash,
            "key_id": self.key_id,
            "hash": self.hash,
        }

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> AuditRecord:
        """A record from its ``chain_fields`` (an export line); raises ``KeyError``/``TypeError``
        on a malformed one."""
        return cls(
            seq=int(fields["seq"]),
            at=float(fields["at"]),
            action=str(fields["action"]),
            actor=fields.get("actor"),
            execution_id=fields.get("execution_id"),
            node_id=fields.get("node_id"),
            outcome=fields.get("outcome"),
            details=fields.get("details"),
            prev_hash=str(fields["prev_hash"]),
            key_id=str(fields["key_id"]),
            hash=str(fields["hash"]),
        )


class AuditSigner:
    """The key that signs new records, by id (the primary key of the audit key ring)."""

    __slots__ = ("_mac", "key", "key_id")

    def __init__(self, key: bytes, key_id: str) -> None:
        self.key = key
        self.key_id = key_id
        # Keyed once: copying a keyed HMAC skips the key schedule on every record.
        self._mac = hmac.new(key, digestmod=hashlib.sha256)

    @classmethod
    def from_ring(cls, ring: KeyRing) -> AuditSigner:
        return cls(ring.keys[ring.primary], ring.primary)

    def sign(self, canonical: str) -> str:
        mac = self._mac.copy()
        mac.update(canonical.encode())
        return mac.hexdigest()

    def head(self, seq: int, digest: str) -> StoredHead:
        """The head kept aside for the record ``seq`` with hash ``digest``, signed."""
        return StoredHead(seq, digest, self.key_id, self.sign(head_text(seq, digest)))


def head_text(seq: int, digest: str) -> str:
    """What a head's ``mac`` signs (distinct from any record's canonical JSON)."""
    return f"audit_head:{seq}:{digest}"


@dataclass(frozen=True, slots=True)
class StoredHead:
    """The head kept aside: the newest record's seq and hash, with their signature."""

    seq: int
    hash: str
    key_id: str
    mac: str

    @property
    def chain(self) -> ChainHead:
        return ChainHead(self.seq, self.hash)

    def valid(self, keys: dict[str, bytes]) -> bool:
        key = keys.get(self.key_id)
        if key is None:
            return False
        expected = hmac.new(key, head_text(self.seq, self.hash).encode(), hashlib.sha256)
        return hmac.compare_digest(expected.hexdigest(), self.mac)


@dataclass(slots=True)
class AuditFilter:
    """Filters for listing audit records; all optional, combined with AND."""

    execution_id: str | None = None
    actor: str | None = None
    action_prefix: str | None = None  # "node." matches node.completed, node.failed...
    since: float | None = None  # at >= since
    until: float | None = None  # at < until
    after_seq: int = 0
    limit: int = 100


# (action, at, actor, execution_id, node_id, outcome, details as canonical JSON or None)
AuditItem = tuple[str, float, str | None, str | None, str | None, str | None, str | None]
# (seq, at, action, actor, execution_id, node_id, outcome, details, prev_hash, key_id, hash):
# the column order of the audit table.
AuditRow = tuple[
    int, float, str, str | None, str | None, str | None, str | None, str | None, str, str, str
]


def _text(value: str | None) -> str:
    return "null" if value is None else _string(value)


def seal_items(items: list[AuditItem], head: ChainHead, signer: AuditSigner) -> list[AuditRow]:
    """Chain ``items`` after ``head``, in order, as table rows.

    The hot path of audited commits, so the canonical JSON that ``audit_chain`` signs (keys
    sorted, no spaces) is written out by hand: the same text, a third of the cost. A unit
    test holds it to ``audit_chain.seal``.
    """
    rows: list[AuditRow] = []
    seq, prev = head.seq, head.hash
    key_id = signer.key_id
    key_json = _string(key_id)
    sign = signer.sign
    for action, at, actor, execution_id, node_id, outcome, details in items:
        seq += 1
        canonical = (
            f'{{"action":{_string(action)},"actor":{_text(actor)},"at":{float.__repr__(at)},'
            f'"details":{"null" if details is None else details},'
            f'"execution_id":{_text(execution_id)},"key_id":{key_json},'
            f'"node_id":{_text(node_id)},"outcome":{_text(outcome)},'
            f'"prev_hash":{_string(prev)},"seq":{seq}}}'
        )
        digest = sign(canonical)
        rows.append(
            (seq, at, action, actor, execution_id, node_id, outcome, details, prev, key_id, digest)
        )
        prev = digest
    return rows


def entry_items(entries: list[AuditEntry]) -> list[AuditItem]:
    """Entries as items for ``seal_items`` (their details in canonical JSON)."""
    return [
        (
            e.action,
            float(e.at),
            e.actor,
            e.execution_id,
            e.node_id,
            e.outcome,
            None if e.details is None else _dumps(e.details),
        )
        for e in entries
    ]


def record_of(row: Sequence[Any]) -> AuditRecord:
    """A record from a table row (details as JSON text). The signature covers the canonical
    text of the details, so a stored text that is not exactly it (``{"role":"admin",
    "role":"operator"}`` reads as the last value; ``"\\u0061"`` as ``"a"``) is kept aside
    for the verification to refuse, whatever it parses to."""
    details = None if row[7] is None else json.loads(row[7])
    stored = None if row[7] is None or _dumps(details) == row[7] else str(row[7])
    return AuditRecord(
        seq=int(row[0]),
        at=row[1],
        action=row[2],
        actor=row[3],
        execution_id=row[4],
        node_id=row[5],
        outcome=row[6],
        details=details,
        prev_hash=row[8],
        key_id=row[9],
        hash=row[10],
        stored_details=stored,
    )


def transition_items(batch: CommitBatch) -> list[AuditItem]:
    """One item per journal record of an engine commit: the transitions it makes durable, and
    the control requests made with them."""
    actor = f"engine:{batch.owner}" if batch.owner else "engine"
    items: list[AuditItem] = []
    for (execution_id, record), event_id in zip(batch.records, batch.event_ids, strict=True):
        node = record.node
        state = record.state if node is not None else record.status
        # Keys in sorted order, as the canonical form wants them.
        details = "{"
        if node is not None:
            details += f'"attempt":{int(record.attempt)},'
        error = record.error
        if error is not None and isinstance(error.get("category"), str):
            # The category says why; messages may carry personal data, and stay in the journal.
            details += f'"error":{_string(error["category"])},'
        details += f'"event_id":{_string(event_id)}}}'
        items.append(
            (
                record.type,
                float(record.at),
                actor,
                execution_id,
                node,
                None if state is None else state.value,
                details,
            )
        )
    for request in batch.requests:  # control requests journalled with the transitions
        verb = str(request.request.get("verb"))
        at, owner = request.at, batch.owner
        items += request_items(request.execution_id, request.event_id, verb, at, owner)
    return items


def request_items(
    execution_id: str, event_id: str, verb: str, at: float, owner: str | None
) -> list[AuditItem]:
    """The audit record of a ``control.requested`` event (``Store.request_control``): one
    process asking the owner of an execution to act on it."""
    actor = f"engine:{owner}" if owner else "engine"
    details = f'{{"event_id":{_string(event_id)},"verb":{_string(verb)}}}'
    return [("control.requested", float(at), actor, execution_id, None, None, details)]


def purge_items(count: int, cutoff: float, actor: str | None, now: float) -> list[AuditItem]:
    """The audit record of a retention purge."""
    entry = AuditEntry(
        action=PURGE_ACTION,
        at=now,
        actor=actor,
        outcome="purged",
        details={"executions": count, "finished_before": float(cutoff)},
    )
    return entry_items([entry])
