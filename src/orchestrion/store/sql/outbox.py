"""The outbox side of ``SQLStore``, written once for every dialect (``store/outbox.py`` says
what each method does). The commit fills ``outbox`` (``sqlite.py``, ``postgres.py``: the same
rows as the journal's); this reads it and keeps the deliveries still owed."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import EventRecord
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus
from orchestrion.store.sql.driver import C, SQLDriver
from orchestrion.store.sql.rows import EVENT_COLS, dumps, event_of

__all__ = ["OWE_FOLLOW", "SQLOutbox", "owed_follow"]

_DELIVERY_COLS = (
    "id, sink, event_id, event, attempts, next_at, status, error, created_at, updated_at"
)
_INSERT_DELIVERY = (
    "INSERT INTO sink_deliveries"
    " (sink, event_id, event, attempts, next_at, status, error, created_at, updated_at)"
    " VALUES (:sink, :event_id, :event, :attempts, :next_at, :status, :error, :created_at,"
    " :updated_at)"
)
_UPDATE_DELIVERY = (
    "UPDATE sink_deliveries SET attempts = :attempts, next_at = :next_at, status = :status,"
    " error = :error, updated_at = :updated_at WHERE id = :id"
)
_DELIVERIES = f"SELECT {_DELIVERY_COLS} FROM sink_deliveries"
OWE_FOLLOW = (
    "INSERT INTO follows_owed (execution_id, ending, at) VALUES (:e, :ending, :at)"
    " ON CONFLICT (execution_id) DO NOTHING"
)


def owed_follow(execution_id: str, ending: str) -> dict[str, Any]:
    """The parameters of ``OWE_FOLLOW``: the commit's own row of what it owes."""
    return {"e": execution_id, "ending": ending, "at": time.time()}


def _delivery_of(row: Sequence[Any]) -> DeliveryRecord:
    return DeliveryRecord(
        id=int(row[0]),
        sink=row[1],
        event_id=row[2],
        event=json.loads(row[3]),
        attempts=int(row[4]),
        next_at=float(row[5]),
        status=DeliveryStatus(row[6]),
        error=row[7],
        created_at=float(row[8]),
        updated_at=float(row[9]),
    )


def _delivery_params(record: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "sink": record.sink,
        "event_id": record.event_id,
        "event": dumps(record.event),
        "attempts": record.attempts,
        "next_at": record.next_at,
        "status": record.status.value,
        "error": record.error,
        "created_at": record.created_at,
        "updated_at": record.updated_at,
    }


def _as_ints(params: dict[str, Any]) -> dict[str, Any]:
    """An id list's parameters with the seqs as integers again (the column's type)."""
    return {
        key: [int(v) for v in value] if isinstance(value, list) else int(value)
        for key, value in params.items()
    }


class SQLOutbox(SQLDriver[C]):
    """The outbox and the deliveries owed, in a SQL store."""

    async def outbox_page(self, limit: int = 256) -> list[EventRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(
                f"SELECT {EVENT_COLS} FROM outbox ORDER BY seq LIMIT :limit", {"limit": limit}
            )
        return [event_of(row) for row in rows]

    async def outbox_size(self) -> int:
        async with self._connection() as conn:
            row = await conn.row("SELECT COUNT(*) FROM outbox")
        return int(row[0]) if row else 0

    async def settle_outbox(self, seqs: list[int], owed: list[DeliveryRecord]) -> None:
        async with self._transaction() as tx:
            for record in owed:
                params = _delivery_params(record)
                del params["id"]
                await tx.run(_INSERT_DELIVERY, params)
            # Exactly these rows: on PostgreSQL a row with a lower seq may commit after the page
            # was read (sequences are taken before commit), and it is the next page's.
            for chunk in self._chunks([str(seq) for seq in seqs]):
                cond, params = self._in_list("seq", chunk)
                await tx.run(f"DELETE FROM outbox WHERE {cond}", _as_ints(params))

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        async with self._connection() as conn:
            rows = await conn.rows(
                f"{_DELIVERIES} WHERE status = :s AND next_at <= :now ORDER BY next_at, id"
                " LIMIT :limit",
                {"s": DeliveryStatus.RETRY.value, "now": now, "limit": limit},
            )
        return [_delivery_of(row) for row in rows]

    async def settle_deliveries(self, done: list[int], changed: list[DeliveryRecord]) -> None:
        async with self._transaction() as tx:
            for delivery_id in done:
                await tx.run("DELETE FROM sink_deliveries WHERE id = :id", {"id": delivery_id})
            for record in changed:
                params = _delivery_params(record)
                for key in ("sink", "event_id", "event", "created_at"):
                    del params[key]
                await tx.run(_UPDATE_DELIVERY, params)

    async def list_deliveries(
        self, status: DeliveryStatus | None = None, sink: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        where: list[str] = []
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            where.append("status = :s")
            params["s"] = status.value
        if sink is not None:
            where.append("sink = :sink")
            params["sink"] = sink
        sql = _DELIVERIES + (f" WHERE {' AND '.join(where)}" if where else "")
        async with self._connection() as conn:
            rows = await conn.rows(f"{sql} ORDER BY id LIMIT :limit", params)
        return [_delivery_of(row) for row in rows]

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord:
        async with self._connection() as conn:
            row = await conn.row(f"{_DELIVERIES} WHERE id = :id", {"id": delivery_id})
        if row is None:
            raise ExecutionNotFound(f"delivery {delivery_id} not found")
        return _delivery_of(row)

    async def count_deliveries(self) -> dict[tuple[str, DeliveryStatus], int]:
        async with self._connection() as conn:
            rows = await conn.rows(
                "SELECT sink, status, COUNT(*) FROM sink_deliveries GROUP BY sink, status"
            )
        return {(row[0], DeliveryStatus(row[1])): int(row[2]) for row in rows}

    async def owes(self, sink: str, event_id: str) -> bool:
        async with self._connection() as conn:
            row = await conn.row(
                "SELECT 1 FROM sink_deliveries WHERE sink = :sink AND event_id = :e LIMIT 1",
                {"sink": sink, "e": event_id},
            )
        return row is not None

    async def owed_follows(self, before: float, limit: int = 100) -> list[tuple[str, str]]:
        async with self._connection() as conn:
            rows = await conn.rows(
                "SELECT execution_id, ending FROM follows_owed WHERE at <= :before"
                " ORDER BY at, execution_id LIMIT :limit",
                {"before": before, "limit": limit},
            )
        return [(row[0], row[1]) for row in rows]

    async def settle_follow(self, execution_id: str) -> None:
        async with self._transaction() as tx:
            await tx.run("DELETE FROM follows_owed WHERE execution_id = :e", {"e": execution_id})
