"""The sign-out side of ``MemoryStore`` (``store/sessions.py`` says what each method does)."""

from __future__ import annotations

from orchestrion.store.sessions import EndedSession

__all__ = ["MemorySessions"]


class MemorySessions:
    """Signed-out sessions in a dict, by nonce."""

    def __init__(self) -> None:
        self._ended: dict[str, EndedSession] = {}
        self._ended_seq = 0

    async def end_session(self, nonce: str, expires: float, now: float) -> None:
        if nonce not in self._ended:
            self._ended_seq += 1
            self._ended[nonce] = EndedSession(self._ended_seq, nonce, expires)
        self._ended = {
            n: row
            for n, row in self._ended.items()
            if row.expires >= now or row.seq == self._ended_seq
        }

    async def ended_sessions(
        self, after: int, now: float, limit: int = 10_000
    ) -> list[EndedSession]:
        rows = sorted(self._ended.values())
        return [row for row in rows if row.seq > after and row.expires > now][:limit]
