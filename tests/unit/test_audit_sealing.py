"""The stores' fast sealing writes exactly what ``audit_chain`` signs and verifies."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from orchestrion.core.events import Record
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.governance.audit_chain import ChainHead, seal, verify
from orchestrion.store.audit import (
    AuditEntry,
    AuditSigner,
    entry_items,
    record_of,
    seal_items,
    transition_items,
)
from orchestrion.store.base import CommitBatch

KEY = b"s" * 32
SIGNER = AuditSigner(KEY, "k-1")
text = st.text(max_size=20)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=8,
)


@given(
    st.lists(
        st.builds(
            AuditEntry,
            action=text,
            at=st.floats(min_value=0, max_value=4e9),
            actor=st.none() | text,
            execution_id=st.none() | text,
            node_id=st.none() | text,
            outcome=st.none() | text,
            details=st.none() | st.dictionaries(text, json_values, max_size=4),
        ),
        max_size=5,
    ),
    st.integers(min_value=0, max_value=10**12),
)
def test_fast_sealing_matches_the_chain_module(entries: list[AuditEntry], start: int) -> None:
    head = ChainHead(start, "ab" * 32)
    rows = seal_items(entry_items(entries), head, SIGNER)
    previous = head
    for entry, row in zip(entries, rows, strict=True):
        fields: dict[str, Any] = {
            "at": float(entry.at),
            "action": entry.action,
            "actor": entry.actor,
            "execution_id": entry.execution_id,
            "node_id": entry.node_id,
            "outcome": entry.outcome,
            "details": entry.details,
        }
        expected = seal(fields, previous, KEY, "k-1")
        record = record_of(row)
        assert record.chain_fields() == expected
        previous = ChainHead(expected["seq"], expected["hash"])


def test_transitions_seal_into_a_verifiable_chain() -> None:
    batch = CommitBatch(owner="h:1:x")
    batch.add(
        "e\u00e9", Record("execution.started", 1.0, status=ExecutionStatus.RUNNING), "i0", None
    )
    failed = Record(
        "node.failed",
        2.5,
        node='n"1',
        attempt=3,
        state=NodeState.FAILED,
        error={"category": "policy", "message": "secret"},
    )
    batch.add("e\u00e9", failed, "i1", "i0")
    rows = seal_items(transition_items(batch), ChainHead(), SIGNER)
    records = [record_of(row) for row in rows]
    assert records[1].details == {"attempt": 3, "error": "policy", "event_id": "i1"}
    assert records[0].details == {"event_id": "i0"}
    assert "secret" not in repr(records)
    assert verify([r.chain_fields() for r in records], {"k-1": KEY}).ok
