"""``AuditLog``: the audit trail of one engine process: write, read, verify, purge.

On when the policy's audit key ring is set (``Governance.audit_keys``): its primary key signs,
every key verifies. Off otherwise: nothing is written, ``status`` says so and verifying is
refused (there is no key to verify with).

Verifying (``verify_trail``) checks the chain and the head kept aside, cross-checks the trail
against the journal (``audit_coverage``) and against the checkpoints of the policy's anchor
file (``audit_anchor``). With an anchor configured, ``start`` and ``stop`` write checkpoints
at the start and end of every engine, and every interval between.

What writes here: the engine's commits (each transition, in the commit's own transaction, via
the ``signer`` on the batch), the API (each mutating call and admin read), any control that
refuses something (``violation``), and the retention purge. Each ``record`` is one
transaction of its own, sealed under the store's lock.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrion.errors import ConfigurationError
from orchestrion.governance.audit_chain import AuditBreak, ChainHead, Verification, verify
from orchestrion.store.audit import AuditEntry, AuditFilter, AuditRecord, AuditSigner, StoredHead

if TYPE_CHECKING:
    from orchestrion.governance.runtime import Governance
    from orchestrion.store.audit_anchor import AuditAnchor
    from orchestrion.store.base import EventRecord, Store

__all__ = [
    "POLICY_VIOLATION",
    "AuditLog",
    "AuditStatus",
    "verification_keys",
    "verify_records",
    "verify_trail",
]

logger = logging.getLogger(__name__)

POLICY_VIOLATION = "policy.violation"
_PAGE = 5000


@dataclass(frozen=True, slots=True)
class AuditStatus:
    """Whether the trail is being written, and with which key (for the compliance report)."""

    enabled: bool
    key_id: str | None
    verify_key_ids: tuple[str, ...]
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "key_id": self.key_id,
            "verify_key_ids": list(self.verify_key_ids),
            "reason": self.reason,
        }


def _plain(details: dict[str, Any] | None) -> dict[str, Any] | None:
    """``details`` as they will read back from storage (string keys, lists), so the record
    verifies after the round trip; values JSON cannot hold become their text."""
    if details is None:
        return None
    plain: dict[str, Any] = json.loads(json.dumps(details, default=str))
    return plain


def verification_keys(governance: Governance) -> dict[str, bytes]:
    """Every audit key by id; ``ConfigurationError`` naming the variable when none is set."""
    ring = governance.audit_keys
    if ring is None:
        raise ConfigurationError(
            f"{governance.policy.audit.key_env} is not set: the audit trail is off"
            " and cannot be verified without its keys"
        )
    return dict(ring.keys)


def verify_records(
    records: Iterable[AuditRecord],
    keys: dict[str, bytes],
    head: StoredHead | None,
    *,
    expected: ChainHead | None = None,
) -> Verification:
    """``audit_chain.verify`` over stored records against the head kept aside (which must be
    there when records are, and signed) and, when given, a head noted elsewhere."""
    trail = list(records)
    rows = [record.signed_fields() for record in trail]
    trusted = head is not None and head.valid(keys)
    result = verify(rows, keys, expected_head=head.chain if head is not None and trusted else None)
    _name_respelled(result, trail)
    problem: str | None = None
    if head is None and rows:
        problem = "the head kept aside (table audit_head) is missing"
    elif head is not None and not trusted:
        problem = (
            f"the head kept aside (table audit_head, seq {head.seq}) does not match its signature"
        )
    if problem is not None:
        result.breaks.append(
            AuditBreak(
                result.verified_up_to + 1, "truncated", f"{problem}: newest records may be gone"
            )
        )
        result.ok = False
    if result.ok and expected is not None:
        result = verify(rows, keys, expected_head=expected)
    return result


def _name_respelled(result: Verification, records: list[AuditRecord]) -> None:
    """Say so when the first break is a record whose details are stored as another text."""
    respelled = {r.seq for r in records if r.stored_details is not None}
    if result.breaks and result.breaks[0].seq in respelled:
        seq = result.breaks[0].seq
        result.breaks[0] = AuditBreak(
            seq,
            "edited",
            f"record {seq}'s details are not stored as the text that was signed (a duplicate"
            " key, or another spelling of a value)",
        )


async def _journal(store: Store) -> list[EventRecord]:
    """Every journal event, in journal order. Read below encryption at rest: the ids, types
    and times this needs are never sealed, and a value sealed with a key since retired must
    not stop a verification."""
    from orchestrion.store.encrypted import EncryptedStore

    if isinstance(store, EncryptedStore):
        store = store.inner
    events: list[EventRecord] = []
    after = 0
    while page := await store.list_events(after_seq=after, limit=_PAGE):
        events.extend(page)
        after = page[-1].seq
    return events


async def _trail(store: Store) -> list[AuditRecord]:
    records: list[AuditRecord] = []
    after = 0
    while page := await store.list_audit(AuditFilter(after_seq=after, limit=_PAGE)):
        records.extend(page)
        after = page[-1].seq
    return records


async def verify_trail(
    store: Store,
    keys: dict[str, bytes],
    *,
    anchor_file: str | None = None,
    expected: ChainHead | None = None,
) -> tuple[Verification, StoredHead | None]:
    """Everything ``verify`` checks of a stored trail, and the head kept aside: the chain and
    that head, the journal's coverage, the checkpoints in ``anchor_file`` (when one is
    configured) and ``expected`` (a head noted elsewhere)."""
    # What is read first is covered by what is read after, however busy the writers: a
    # checkpoint names records committed before it was written, and every journal event its
    # record, committed in the same transaction. So the anchor, then the journal, the head and
    # the trail last.
    from orchestrion.store.audit_anchor import anchor_breaks, read_anchor
    from orchestrion.store.audit_coverage import coverage_breaks

    reading = None
    if anchor_file is not None:
        reading = await asyncio.to_thread(read_anchor, anchor_file, keys)
    events = await _journal(store)
    head = await store.audit_head()
    records = await _trail(store)
    result = verify_records(records, keys, head, expected=expected)
    result.breaks.extend(coverage_breaks(events, records))
    if reading is not None:
        last = max((r.seq for r in records), default=0)
        result.breaks.extend(anchor_breaks(reading, {r.seq: r.hash for r in records}, last))
        result.anchor = reading.to_dict()
    result.ok = not result.breaks
    return result, head


class AuditLog:
    """The trail of one engine; see the module docstring."""

    def __init__(self, governance: Governance, store: Callable[[], Store]) -> None:
        self._governance = governance
        self._store = store
        ring = governance.audit_keys
        self.signer: AuditSigner | None = None if ring is None else AuditSigner.from_ring(ring)
        self._checked: tuple[float, dict[str, Any]] | None = None  # (monotonic, report)
        self._anchor: AuditAnchor | None = None

    @property
    def anchor_file(self) -> str | None:
        """The policy's ``audit.anchor.file``: the checkpoints ``verify`` checks against."""
        return self._governance.policy.audit.anchor.file

    async def start(self) -> None:
        """Anchor the trail (a first checkpoint, then one every interval), when the policy
        asks for it and the trail is on; ``ConfigurationError`` when the file cannot be
        written. The store must be open."""
        if self._anchor is not None:
            return
        anchor = self._new_anchor()
        if anchor is not None:
            await anchor.start()
        self._anchor = anchor

    def _new_anchor(self) -> AuditAnchor | None:
        if self.signer is None:
            return None  # the trail is off: nothing to anchor, and no anchor module to load
        from orchestrion.store.audit_anchor import AuditAnchor

        policy = self._governance.policy.audit.anchor
        return AuditAnchor.for_policy(
            policy, self.signer, self.keys, lambda: self._store().audit_head()
        )

    async def stop(self) -> None:
        """A last checkpoint, before the store closes."""
        anchor, self._anchor = self._anchor, None
        if anchor is not None:
            await anchor.stop()

    async def checkpoint(self) -> None:
        """One checkpoint now, for a short-lived writer (``orchestrion purge``)."""
        if self._anchor is not None:
            await self._anchor.checkpoint(force=True)
            return
        anchor = self._new_anchor()
        if anchor is not None:
            await anchor.checkpoint(force=True)

    @property
    def enabled(self) -> bool:
        return self.signer is not None

    @property
    def store(self) -> Store:
        return self._store()

    @property
    def keys(self) -> dict[str, bytes]:
        return verification_keys(self._governance)

    @property
    def retention_days(self) -> int | None:
        """``retention.days`` of the policy: how long finished executions are kept."""
        return self._governance.policy.retention.days

    def status(self) -> AuditStatus:
        policy = self._governance.policy.audit
        ring = self._governance.audit_keys
        if ring is None:
            reason = (
                "disabled in the governance policy (audit.enabled: false)"
                if not policy.enabled
                else f"{policy.key_env} is not set"
            )
            return AuditStatus(False, None, (), reason)
        return AuditStatus(True, ring.primary, tuple(ring.keys))

    async def record(
        self,
        action: str,
        *,
        actor: str | None = None,
        execution_id: str | None = None,
        node_id: str | None = None,
        outcome: str | None = None,
        details: dict[str, Any] | None = None,
        at: float | None = None,
    ) -> AuditRecord | None:
        """Append one record (None when the trail is off)."""
        if self.signer is None:
            return None
        entry = AuditEntry(
            action=action,
            at=time.time() if at is None else at,
            actor=actor,
            execution_id=execution_id,
            node_id=node_id,
            outcome=outcome,
            details=_plain(details),
        )
        (sealed,) = await self._store().append_audit([entry], self.signer)
        return sealed

    async def violation(
        self,
        control: str,
        message: str,
        *,
        actor: str | None = None,
        execution_id: str | None = None,
        node_id: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> AuditRecord | None:
        """A control refused something (``control``: "ssrf", "llm.model", "injection", ...)."""
        return await self.record(
            POLICY_VIOLATION,
            actor=actor,
            execution_id=execution_id,
            node_id=node_id,
            outcome=control,
            details={"message": message, **(details or {})},
        )

    async def list(self, flt: AuditFilter) -> list[AuditRecord]:
        return await self._store().list_audit(flt)

    async def head(self) -> StoredHead | None:
        return await self._store().audit_head()

    async def records(self) -> AsyncIterator[AuditRecord]:
        """Every record, in seq order, page by page."""
        store = self._store()
        after = 0
        while page := await store.list_audit(AuditFilter(after_seq=after, limit=_PAGE)):
            for record in page:
                yield record
            after = page[-1].seq

    async def chain_check(self, max_age: float = 60.0) -> dict[str, Any] | None:
        """The compliance report's view of the chain: ``{"verified", "records", "detail",
        "breaks", "anchor"}``, from a full verification at most ``max_age`` seconds old
        (verifying reads the whole trail, so a health probe must not do it on every call;
        any ``verify`` refreshes it). None when the trail is off."""
        if not self.enabled:
            return None
        cached = self._checked
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        await self.verify()
        assert self._checked is not None  # set by verify
        return self._checked[1]

    @staticmethod
    def _report(result: Verification) -> dict[str, Any]:
        first = result.breaks[0] if result.breaks else None
        report: dict[str, Any] = {
            "verified": result.ok,
            "records": result.verified_up_to,
            "checked_at": time.time(),
        }
        if first is not None:
            where = "" if first.kind == "anchor" else f" at record {first.seq}"
            report["detail"] = f"audit trail broken{where} ({first.kind}): {first.message}"
            report["breaks"] = [
                {"seq": b.seq, "kind": b.kind, "message": b.message} for b in result.breaks
            ]
        if result.anchor is not None:
            latest = result.anchor["latest"]
            report["anchor"] = {
                "file": result.anchor["file"],
                "checkpoints": result.anchor["checkpoints"],
                "latest_seq": None if latest is None else latest["seq"],
            }
        return report

    async def verify(self, expected: ChainHead | None = None) -> Verification:
        """Check the whole stored trail: see ``verify_trail``."""
        result, _ = await self.verify_with_head(expected)
        return result

    async def verify_with_head(
        self, expected: ChainHead | None = None
    ) -> tuple[Verification, StoredHead | None]:
        """``verify``, and the head kept aside it was checked against. The compliance report
        (``chain_check``) shows this outcome from now on."""
        started = time.monotonic()
        result, head = await verify_trail(
            self._store(), self.keys, anchor_file=self.anchor_file, expected=expected
        )
        if expected is None:
            self._checked = (started, self._report(result))
        return result, head

    async def purge(self, finished_before: float, *, actor: str | None = None) -> int:
        """Delete executions finished before ``finished_before`` (epoch seconds), with one
        audit record of the purge in the same transaction. Returns how many went."""
        count = await self._store().purge_executions(
            finished_before, self.signer, actor, time.time()
        )
        logger.info(
            "retention purge: %d execution(s) finished before %.0f deleted", count, finished_before
        )
        return count
