"""Audit records as the stores keep them: entries in, sealed records out, and the filters.

An ``AuditEntry`` is what happened (action, who, when, about what); a store seals entries with
an ``AuditSigner`` after the head it reads under its write lock (``audit_chain.seal``), so the
chain never forks, and keeps the head aside in a one-row table updated in the same
transaction. ``AuditRecord.chain_fields`` is exactly the dict that was signed, so a record read
back (from a table or an export line) verifies with ``audit_chain.verify``.

The engine's commit batches carry a signer: each journal record of the batch then becomes an
audit record too (``transition_entries``), in the commit's own transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrion.governance.audit_chain import ChainHead, seal

if TYPE_CHECKING:
    from orchestrion.governance.encryption import KeyRing
    from orchestrion.store.base import CommitBatch

__all__ = [
    "PURGE_ACTION",
    "AuditEntry",
    "AuditFilter",
    "AuditRecord",
    "AuditSigner",
    "purge_entry",
    "seal_entries",
    "transition_entries",
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

    @property
    def details_text(self) -> str | None:
        return None if self.details is None else _dumps(self.details)


@dataclass(frozen=True, slots=True)
class AuditSigner:
    """The key that signs new records, by id (the primary key of the audit key ring)."""

    key: bytes
    key_id: str

    @classmethod
    def from_ring(cls, ring: KeyRing) -> AuditSigner:
        return cls(ring.keys[ring.primary], ring.primary)


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


def seal_entries(
    entries: list[AuditEntry], head: ChainHead, signer: AuditSigner
) -> list[AuditRecord]:
    """Chain ``entries`` after ``head``, in order."""
    sealed: list[AuditRecord] = []
    for entry in entries:
        fields = {
            "at": entry.at,
            "action": entry.action,
            "actor": entry.actor,
            "execution_id": entry.execution_id,
            "node_id": entry.node_id,
            "outcome": entry.outcome,
            "details": entry.details,
        }
        record = seal(fields, head, signer.key, signer.key_id)
        sealed.append(
            AuditRecord(
                seq=record["seq"],
                at=entry.at,
                action=entry.action,
                actor=entry.actor,
                execution_id=entry.execution_id,
                node_id=entry.node_id,
                outcome=entry.outcome,
                details=entry.details,
                prev_hash=record["prev_hash"],
                key_id=signer.key_id,
                hash=record["hash"],
            )
        )
        head = ChainHead(record["seq"], record["hash"])
    return sealed


def transition_entries(batch: CommitBatch) -> list[AuditEntry]:
    """One entry per journal record of an engine commit: the transitions it makes durable."""
    actor = f"engine:{batch.owner}" if batch.owner else "engine"
    entries: list[AuditEntry] = []
    for (execution_id, record), event_id in zip(batch.records, batch.event_ids, strict=True):
        state = record.state if record.node is not None else record.status
        details: dict[str, Any] = {"event_id": event_id}
        if record.node is not None:
            details["attempt"] = record.attempt
        if record.error is not None and "category" in record.error:
            # The category says why; messages may carry personal data, and stay in the journal.
            details["error"] = record.error["category"]
        entries.append(
            AuditEntry(
                action=record.type,
                at=record.at,
                actor=actor,
                execution_id=execution_id,
                node_id=record.node,
                outcome=None if state is None else state.value,
                details=details,
            )
        )
    return entries


def purge_entry(count: int, cutoff: float, actor: str | None, now: float) -> AuditEntry:
    """The audit record of a retention purge."""
    return AuditEntry(
        action=PURGE_ACTION,
        at=now,
        actor=actor,
        outcome="purged",
        details={"executions": count, "finished_before": cutoff},
    )
