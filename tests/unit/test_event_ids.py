"""Event ids: unique, 32 hex characters, and ordered by the time they were made."""

from __future__ import annotations

from orchestrion.engine.ids import new_event_id


def test_event_ids_are_unique_hex_and_ordered_by_their_clock_part() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    clock = [i[:16] for i in ids]  # two made in one nanosecond differ in the random part
    assert clock == sorted(clock)
