"""The trail against the journal: which missing records are breaks, and which are not
(executions that ran before the trail was on)."""

from __future__ import annotations

import pytest

from orchestrion.governance.audit_chain import GENESIS
from orchestrion.store.audit import AuditRecord
from orchestrion.store.audit_coverage import coverage_breaks
from orchestrion.store.base import EventRecord

# The journal: executions "old" (ran before the trail was on), "a" and "b", interleaved.
JOURNAL = [
    ("old", "execution.started", None),
    ("old", "node.completed", "n"),
    ("a", "execution.started", None),
    ("a", "node.queued", "n"),
    ("b", "execution.started", None),
    ("a", "node.completed", "n"),
    ("b", "node.completed", "n"),
    ("a", "execution.completed", None),
    ("b", "execution.completed", None),
]
EVENTS = [
    EventRecord(seq=i, id=f"ev{i}", execution_id=e, type=t, at=1_800_000_000.0 + i, node_id=n)
    for i, (e, t, n) in enumerate(JOURNAL, start=1)
]


def records(event_seqs: list[int], api: int = 0) -> list[AuditRecord]:
    """A trail holding the records of these journal events (and ``api`` API records)."""
    out: list[AuditRecord] = []
    for _ in range(api):
        out.append(_record(len(out) + 1, "api.create_workflow", None, {"method": "POST"}))
    for s in event_seqs:
        event = EVENTS[s - 1]
        out.append(_record(len(out) + 1, event.type, event.execution_id, {"event_id": event.id}))
    return out


def _record(seq: int, action: str, execution: str | None, details: dict[str, str]) -> AuditRecord:
    return AuditRecord(
        seq, 0.0, action, "engine", execution, None, None, details, GENESIS, "k1", "h" * 64
    )


@pytest.mark.parametrize(
    ("audited", "api", "expected"),
    [
        ([3, 4, 5, 6, 7, 8, 9], 0, None),  # the trail turned on after "old": fine
        ([4, 5, 6, 7, 8, 9], 0, None),  # ... or in the middle of "a": from its first record on
        ([5, 7, 9], 0, None),  # only "b" ran with the trail on
        ([3, 4, 5, 6, 7], 0, ("missing", 6, "2 transition(s)")),  # the newest two deleted
        ([3, 4, 5, 7, 8, 9], 0, ("missing", 7, "node.completed of execution a node n")),
        ([3, 5, 6, 7, 8, 9], 0, ("missing", 7, "node.queued of execution a node n")),
        ([], 0, ("truncated", 1, "empty but the journal holds 9 event(s) of 3 execution(s)")),
        ([], 2, None),  # API records only: no execution is covered yet
    ],
)
def test_coverage(audited: list[int], api: int, expected: tuple[str, int, str] | None) -> None:
    breaks = coverage_breaks(EVENTS, records(audited, api))
    if expected is None:
        assert breaks == []
        return
    (found,) = breaks
    kind, seq, text = expected
    assert (found.kind, found.seq) == (kind, seq)
    assert text in found.message


def test_an_empty_journal_and_an_empty_trail_agree() -> None:
    assert coverage_breaks([], []) == []
    assert coverage_breaks([], records([])) == []


def test_records_whose_events_were_purged_are_fine() -> None:
    """A retention purge deletes events; their records stay."""
    trail = records([3, 4, 5, 6, 7, 8, 9])
    assert coverage_breaks([e for e in EVENTS if e.execution_id != "a"], trail) == []
