"""The audit trail's integrity: every record HMAC-SHA256 signed and chained to the one before.

Pure functions, no I/O (the store that keeps the records comes with the audit table). A record
is its fields plus ``seq`` (1, 2, 3... with no gaps), ``prev_hash`` (the previous record's
``hash``, or the genesis value for the first) and ``hash`` = HMAC-SHA256(key, canonical JSON
of every field but ``hash``). The key id is stored with each record, so keys can rotate: a
verifier is given every key by id.

``verify`` walks the records in ``seq`` order and says where the chain first breaks and how:

- ``edited``: a record's fields no longer match its signature (changed, or re-signed with
  another key);
- ``inserted``: a record that does not match its signature, skipped over by the next record
  (which chains to the one before it), or past the ``expected_head``: added by someone
  without the key;
- ``deleted``: a ``seq`` is missing and does not come later;
- ``reordered``: a ``seq`` out of its place (moved, or re-numbered, which also breaks its
  signature), or a ``prev_hash`` naming another record;
- ``unknown_key``: signed with a key id the verifier was not given.

Deleting the newest records cannot be seen from the records alone; the verifier compares
the head with an externally kept ``expected_head`` (seq and hash) when it has one. A chain
that goes on past that head (records appended since it was noted, each signed) holds it when
the record at its seq has its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GENESIS", "AuditBreak", "ChainHead", "Verification", "seal", "verify"]

GENESIS = "0" * 64
"""``prev_hash`` of the first record."""

_dumps = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class ChainHead:
    """The newest record's position: what the next record chains to."""

    seq: int = 0
    hash: str = GENESIS


@dataclass(frozen=True, slots=True)
class AuditBreak:
    """Where and how the chain breaks."""

    seq: int
    kind: str  # edited | deleted | inserted | reordered | unknown_key | truncated
    message: str


@dataclass(slots=True)
class Verification:
    """The outcome of ``verify``: ok, how far it is verified, and the first break if any."""

    ok: bool
    verified_up_to: int
    records: int
    breaks: list[AuditBreak] = field(default_factory=list)
    # What the external anchor held, when one is configured (see audit_anchor.AnchorReading).
    anchor: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "verified_up_to": self.verified_up_to,
            "records": self.records,
            "breaks": [{"seq": b.seq, "kind": b.kind, "message": b.message} for b in self.breaks],
            "anchor": self.anchor,
        }


def _signature(key: bytes, record: Mapping[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hmac.new(key, _dumps(body).encode(), hashlib.sha256).hexdigest()


def seal(fields: Mapping[str, Any], head: ChainHead, key: bytes, key_id: str) -> dict[str, Any]:
    """The next record: ``fields`` (JSON values; no ``seq``/``prev_hash``/``hash``/``key_id``)
    chained after ``head`` and signed with ``key``."""
    reserved = {"seq", "prev_hash", "hash", "key_id"} & set(fields)
    if reserved:
        raise ValueError(f"audit fields may not set {', '.join(sorted(reserved))}")
    record = {**fields, "seq": head.seq + 1, "prev_hash": head.hash, "key_id": key_id}
    record["hash"] = _signature(key, record)
    return record


def verify(
    records: Iterable[Mapping[str, Any]],
    keys: Mapping[str, bytes],
    *,
    expected_head: ChainHead | None = None,
) -> Verification:
    """Check the chain (records in storage order); see the module docstring."""
    rows = list(records)
    later_seqs = [int(r.get("seq", 0)) for r in rows]
    breaks: list[AuditBreak] = []
    previous = ChainHead()
    passed: str | None = None  # the hash of the record at expected_head.seq, once walked

    def valid(record: Mapping[str, Any]) -> bool:
        key = keys.get(str(record.get("key_id")))
        return key is not None and hmac.compare_digest(
            _signature(key, record), str(record.get("hash", ""))
        )

    for i, record in enumerate(rows):
        seq = int(record.get("seq", 0))
        if str(record.get("key_id")) not in keys:
            message = f"record {seq} is signed with an unknown key id {record.get('key_id')!r}"
            breaks.append(AuditBreak(seq, "unknown_key", message))
            break
        if not valid(record):
            # Which tampering: an intruder the next record skips over (it chains to the one
            # before), a record moved here (its link names another record of the trail), an
            # intruder the following ones were re-numbered around or past the head kept aside,
            # a re-numbered record, or else an edited one.
            after = rows[i + 1] if i + 1 < len(rows) else None
            skipped = after is not None and after.get("prev_hash") == previous.hash
            expected = previous.seq + 1
            moved = record.get("prev_hash") != previous.hash and record.get("prev_hash") in {
                r.get("hash") for r in rows
            }
            if skipped and after is not None and valid(after):
                breaks.append(AuditBreak(seq, "inserted", f"record {seq} was inserted"))
            elif moved:
                message = f"the record at seq {expected} was moved there from elsewhere"
                breaks.append(AuditBreak(expected, "reordered", message))
            elif skipped or (
                after is None and expected_head is not None and seq > expected_head.seq
            ):
                breaks.append(AuditBreak(seq, "inserted", f"record {seq} was inserted"))
            elif seq != expected:
                message = f"record {seq} stands where record {expected} should, re-numbered"
                breaks.append(AuditBreak(expected, "reordered", message))
            else:
                breaks.append(
                    AuditBreak(seq, "edited", f"record {seq} does not match its signature")
                )
            break
        expected = previous.seq + 1
        if seq != expected:
            if expected in later_seqs[i + 1 :] or seq <= previous.seq:
                message = f"record {seq} stands where record {expected} should"
                breaks.append(AuditBreak(expected, "reordered", message))
            else:
                message = f"records {expected}..{seq - 1} are missing"
                breaks.append(AuditBreak(expected, "deleted", message))
            break
        if record.get("prev_hash") != previous.hash:
            message = f"record {seq} does not chain to record {previous.seq}"
            breaks.append(AuditBreak(seq, "reordered", message))
            break
        previous = ChainHead(seq, str(record["hash"]))
        if expected_head is not None and seq == expected_head.seq:
            passed = previous.hash
    if (
        not breaks
        and expected_head is not None
        and previous != expected_head
        and not (previous.seq > expected_head.seq and passed == expected_head.hash)
    ):
        if previous.seq < expected_head.seq:
            message = (
                f"the chain ends at record {previous.seq}, the head kept aside is record "
                f"{expected_head.seq}"
            )
            breaks.append(AuditBreak(previous.seq + 1, "truncated", message))
        else:
            message = f"record {expected_head.seq} is not the head kept aside (another hash)"
            breaks.append(AuditBreak(expected_head.seq, "edited", message))
    return Verification(not breaks, previous.seq, len(rows), breaks)
