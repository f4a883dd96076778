"""Sign-outs as every store adapter keeps them: once per session, read after a cursor, and
forgotten after their expiry without reusing a number a reader has passed."""

from __future__ import annotations

from orchestrion.store.base import Store
from orchestrion.store.sessions import EndedSession

NOW = 1_700_000_000.0


async def test_a_sign_out_is_kept_once_and_read_after_a_cursor(store: Store) -> None:
    await store.end_session("a" * 32, NOW + 60, NOW)
    await store.end_session("b" * 32, NOW + 60, NOW)
    await store.end_session("a" * 32, NOW + 90, NOW)  # signed out twice: nothing new
    rows = await store.ended_sessions(0, NOW)
    assert [(r.nonce, r.expires) for r in rows] == [("a" * 32, NOW + 60), ("b" * 32, NOW + 60)]
    assert rows[0].seq < rows[1].seq
    assert await store.ended_sessions(rows[0].seq, NOW) == [rows[1]]
    assert await store.ended_sessions(rows[1].seq, NOW) == []
    assert await store.ended_sessions(0, NOW, limit=1) == [rows[0]]


async def test_expired_sign_outs_are_forgotten_and_numbers_only_grow(store: Store) -> None:
    await store.end_session("old", NOW + 1, NOW)
    await store.end_session("newest", NOW + 2, NOW)
    [_, newest] = await store.ended_sessions(0, NOW)
    # Both expired: neither is read, and the purge keeps the newest row, so the next
    # sign-out is numbered above every number a reader may have passed.
    later = NOW + 10
    await store.end_session("next", later + 60, later)
    rows = await store.ended_sessions(0, later)
    assert [r.nonce for r in rows] == ["next"]
    assert rows[0].seq > newest.seq
    assert isinstance(rows[0], EndedSession)
