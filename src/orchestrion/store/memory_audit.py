"""``MemoryAuditTrail``: the in-memory store's audit trail, a list sealed in order.

The same chain as the SQL stores' ``audit`` and ``audit_head`` tables (``store/audit.py``
seals it): records after the kept head, or after the last record when the head is missing.
"""

from __future__ import annotations

import bisect

from orchestrion.governance.audit_chain import ChainHead
from orchestrion.store.audit import (
    AuditFilter,
    AuditItem,
    AuditRecord,
    AuditSigner,
    StoredHead,
    record_of,
    seal_items,
)

__all__ = ["MemoryAuditTrail"]


class MemoryAuditTrail:
    """Audit records in ``seq`` order and the head kept aside, as ``Store`` methods need them."""

    def __init__(self) -> None:
        self._records: list[AuditRecord] = []
        self.head: StoredHead | None = None

    def append(self, items: list[AuditItem], signer: AuditSigner) -> list[AuditRecord]:
        """Seal ``items`` after the head and keep them; the sealed records."""
        kept = self.head
        last = self._records[-1] if self._records else None
        if kept is not None:
            head = kept.chain
        else:
            head = ChainHead(last.seq, last.hash) if last is not None else ChainHead()
        sealed = [record_of(row) for row in seal_items(items, head, signer)]
        if sealed:
            self._records.extend(sealed)
            self.head = signer.head(sealed[-1].seq, sealed[-1].hash)
        return sealed

    def select(self, flt: AuditFilter) -> list[AuditRecord]:
        """The records ``flt`` asks for, in ``seq`` order."""
        start = bisect.bisect_right(self._records, flt.after_seq, key=lambda r: r.seq)
        found: list[AuditRecord] = []
        for record in self._records[start:]:
            if (
                (flt.execution_id is not None and record.execution_id != flt.execution_id)
                or (flt.actor is not None and record.actor != flt.actor)
                or (flt.action_prefix and not record.action.startswith(flt.action_prefix))
                or (flt.since is not None and record.at < flt.since)
                or (flt.until is not None and record.at >= flt.until)
            ):
                continue
            found.append(record)  # frozen: safe to hand out
            if len(found) >= max(1, flt.limit):
                break
        return found
