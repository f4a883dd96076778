"""The sign-out side of ``SQLStore``, written once for every dialect (``store/sessions.py``
says what each method does)."""

from __future__ import annotations

from orchestrion.store.sessions import EndedSession
from orchestrion.store.sql.driver import C, SQLDriver

__all__ = ["SQLSessions"]

_INSERT = (
    "INSERT INTO ended_sessions (nonce, expires) VALUES (:nonce, :expires)"
    " ON CONFLICT (nonce) DO NOTHING"
)
# The newest row stays even when expired: on SQLite a new row takes the highest id plus one,
# and with the highest gone it would reuse an id readers have already passed.
_PURGE = (
    "DELETE FROM ended_sessions WHERE expires < :now AND id < (SELECT MAX(id) FROM ended_sessions)"
)
_READ = (
    "SELECT id, nonce, expires FROM ended_sessions WHERE id > :after AND expires > :now"
    " ORDER BY id LIMIT :limit"
)


class SQLSessions(SQLDriver[C]):
    """Signed-out sessions in a SQL store."""

    async def end_session(self, nonce: str, expires: float, now: float) -> None:
        async with self._transaction() as tx:
            await tx.run(_INSERT, {"nonce": nonce, "expires": expires})
            await tx.run(_PURGE, {"now": now})

    async def ended_sessions(
        self, after: int, now: float, limit: int = 10_000
    ) -> list[EndedSession]:
        async with self._connection() as conn:
            rows = await conn.rows(_READ, {"after": after, "now": now, "limit": limit})
        return [EndedSession(int(row[0]), str(row[1]), float(row[2])) for row in rows]
