"""The audit chain: a corpus of tampered trails, each detected and located (issue #6)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrion.governance.audit_chain import GENESIS, ChainHead, seal, verify

KEY, OTHER = b"k" * 32, b"o" * 32
KEYS = {"k1": KEY}


def trail(n: int = 6, key: bytes = KEY, key_id: str = "k1") -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    head = ChainHead()
    for i in range(n):
        record = seal({"action": "node.completed", "who": "key-1", "n": i}, head, key, key_id)
        records.append(record)
        head = ChainHead(record["seq"], record["hash"])
    return records


def head_of(records: list[dict[str, Any]]) -> ChainHead:
    return ChainHead(records[-1]["seq"], records[-1]["hash"])


def test_an_untouched_trail_verifies() -> None:
    records = trail()
    assert records[0]["prev_hash"] == GENESIS
    result = verify(records, KEYS, expected_head=head_of(records))
    assert result.ok and result.verified_up_to == 6 and result.records == 6
    assert verify([], KEYS).ok


def test_rotated_keys_verify_with_every_key_by_id() -> None:
    first = trail(3)
    head = head_of(first)
    more = [seal({"action": "x"}, head, OTHER, "k2")]
    assert verify(first + more, {"k1": KEY, "k2": OTHER}).ok


def edit(records: list[dict[str, Any]]) -> None:
    records[2]["who"] = "mallory"


def edit_and_fix_chain(records: list[dict[str, Any]]) -> None:
    records[2]["n"] = 99
    records[3]["prev_hash"] = "f" * 64  # nobody can re-sign without the key


def delete(records: list[dict[str, Any]]) -> None:
    del records[3]


def insert(records: list[dict[str, Any]]) -> None:
    forged = copy.deepcopy(records[2])
    forged["action"] = "forged"
    forged["seq"] = 3
    records.insert(3, forged)


def insert_signed_with_a_wrong_key(records: list[dict[str, Any]]) -> None:
    previous = ChainHead(records[1]["seq"], records[1]["hash"])
    records.insert(2, seal({"action": "forged"}, previous, OTHER, "k1"))


def reorder(records: list[dict[str, Any]]) -> None:
    records[2], records[3] = records[3], records[2]


def resign_with_a_wrong_key(records: list[dict[str, Any]]) -> None:
    previous = ChainHead(records[3]["seq"], records[3]["prev_hash"])
    fields = {k: v for k, v in records[3].items() if k not in {"seq", "prev_hash", "hash"}}
    fields.pop("key_id")
    fields["who"] = "mallory"
    records[3] = seal(fields, ChainHead(previous.seq - 1, previous.hash), OTHER, "k1")


def swap_seqs(records: list[dict[str, Any]]) -> None:
    records[2]["seq"], records[3]["seq"] = records[3]["seq"], records[2]["seq"]


def append_forged(records: list[dict[str, Any]]) -> None:
    forged = copy.deepcopy(records[-1])
    forged.update(seq=7, prev_hash=records[-1]["hash"], action="forged")
    records.append(forged)


def unknown_key(records: list[dict[str, Any]]) -> None:
    records[4]["key_id"] = "k9"


@pytest.mark.parametrize(
    ("tamper", "kind", "seq", "good"),
    [
        (edit, "edited", 3, 2),
        (edit_and_fix_chain, "edited", 3, 2),
        (delete, "deleted", 4, 3),
        (insert, "inserted", 3, 3),  # a second "record 3" after the real one
        (insert_signed_with_a_wrong_key, "inserted", 3, 2),
        (reorder, "reordered", 3, 2),
        (swap_seqs, "reordered", 3, 2),
        (append_forged, "inserted", 7, 6),
        (resign_with_a_wrong_key, "edited", 4, 3),
        (unknown_key, "unknown_key", 5, 4),
    ],
    ids=lambda v: v.__name__ if callable(v) else str(v),
)
def test_every_tampering_is_detected_and_located(
    tamper: Any, kind: str, seq: int, good: int
) -> None:
    records = trail()
    head = head_of(records)
    tamper(records)
    result = verify(records, KEYS, expected_head=head)
    assert not result.ok
    (found,) = result.breaks
    assert (found.kind, found.seq) == (kind, seq), found
    assert result.verified_up_to == good  # the last record known good


def test_deleting_the_newest_records_is_seen_against_the_head_kept_aside() -> None:
    records = trail()
    head = head_of(records)
    assert verify(records[:4], KEYS).ok  # the records alone cannot tell
    result = verify(records[:4], KEYS, expected_head=head)
    assert not result.ok and result.breaks[0].kind == "truncated"
    assert result.breaks[0].seq == 5


def test_reserved_fields_cannot_be_set_by_callers() -> None:
    with pytest.raises(ValueError, match="hash, seq"):
        seal({"seq": 1, "hash": "x"}, ChainHead(), KEY, "k1")
