"""The engine's ids: event ids and execution/definition ids, unique and ordered by time."""

from __future__ import annotations

import time
import uuid

from orchestrion.engine.ids import new_event_id, new_record_id


def test_event_ids_are_unique_hex_and_ordered_by_their_clock_part() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)
    clock = [i[:16] for i in ids]  # two made in one nanosecond differ in the random part
    assert clock == sorted(clock)


def test_record_ids_are_uuid7_with_the_time_in_milliseconds_and_a_random_part() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_record_id() for _ in range(10_000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text  # the usual lower-case text form
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        assert before <= parsed.int >> 80 <= after
    # Made in one millisecond, ids differ in 74 random bits: every one of them varies.
    random_bits = [uuid.UUID(i).int & ((0xFFF << 64) | ((1 << 62) - 1)) for i in ids]
    varying = 0
    for first in random_bits[1:]:
        varying |= first ^ random_bits[0]
    assert varying == (0xFFF << 64) | ((1 << 62) - 1)


def test_record_ids_made_in_later_milliseconds_sort_after_earlier_ones() -> None:
    ids = []
    for _ in range(20):
        ids.append(new_record_id())
        time.sleep(0.002)
    assert ids == sorted(ids)
