"""The outbox side of ``MemoryStore`` (``store/outbox.py`` says what each method does)."""

from __future__ import annotations

import time
from dataclasses import replace

from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import EventRecord
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus

__all__ = ["MemoryOutbox"]


class MemoryOutbox:
    """The outbox and the deliveries owed, in dicts (copied in and out, as a database would)."""

    def __init__(self) -> None:
        self._outbox: dict[int, EventRecord] = {}
        self._outbox_seq = 0
        self._deliveries: dict[int, DeliveryRecord] = {}
        self._delivery_seq = 0
        self._follows: dict[str, tuple[str, float]] = {}

    def _owe_follows(self, follows: list[tuple[str, str]]) -> None:
        """Called by the commit with ``CommitBatch.follows``."""
        for execution_id, ending in follows:
            self._follows.setdefault(execution_id, (ending, time.time()))

    async def owed_follows(self, before: float, limit: int = 100) -> list[tuple[str, str]]:
        owed = sorted((at, eid, ending) for eid, (ending, at) in self._follows.items())
        return [(eid, ending) for at, eid, ending in owed if at <= before][:limit]

    async def settle_follow(self, execution_id: str) -> None:
        self._follows.pop(execution_id, None)

    def _to_outbox(self, event: EventRecord) -> None:
        """Called by the commit for each journal row while ``CommitBatch.outbox`` is set."""
        self._outbox_seq += 1
        self._outbox[self._outbox_seq] = replace(event, seq=self._outbox_seq)

    async def outbox_page(self, limit: int = 256) -> list[EventRecord]:
        return [replace(self._outbox[seq]) for seq in sorted(self._outbox)[:limit]]

    async def outbox_size(self) -> int:
        return len(self._outbox)

    async def settle_outbox(self, seqs: list[int], owed: list[DeliveryRecord]) -> None:
        for record in owed:
            self._delivery_seq += 1
            self._deliveries[self._delivery_seq] = replace(record, id=self._delivery_seq)
        for seq in seqs:
            self._outbox.pop(seq, None)

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        due = [
            d
            for d in self._deliveries.values()
            if d.status is DeliveryStatus.RETRY and d.next_at <= now
        ]
        due.sort(key=lambda d: (d.next_at, d.id))
        return [replace(d) for d in due[:limit]]

    async def settle_deliveries(self, done: list[int], changed: list[DeliveryRecord]) -> None:
        for delivery_id in done:
            self._deliveries.pop(delivery_id, None)
        for record in changed:
            stored = self._deliveries.get(record.id)
            if stored is not None:
                stored.attempts, stored.next_at = record.attempts, record.next_at
                stored.status, stored.error = record.status, record.error
                stored.updated_at = record.updated_at

    async def list_deliveries(
        self, status: DeliveryStatus | None = None, sink: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        found = [
            replace(d)
            for _, d in sorted(self._deliveries.items())
            if (status is None or d.status is status) and (sink is None or d.sink == sink)
        ]
        return found[:limit]

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord:
        stored = self._deliveries.get(delivery_id)
        if stored is None:
            raise ExecutionNotFound(f"delivery {delivery_id} not found")
        return replace(stored)

    async def count_deliveries(self) -> dict[tuple[str, DeliveryStatus], int]:
        counts: dict[tuple[str, DeliveryStatus], int] = {}
        for d in self._deliveries.values():
            counts[d.sink, d.status] = counts.get((d.sink, d.status), 0) + 1
        return counts

    async def owes(self, sink: str, event_id: str) -> bool:
        return any(d.sink == sink and d.event_id == event_id for d in self._deliveries.values())

    def _drop_dead_deliveries(self, before: float) -> None:
        """Retention: dead letters last changed before ``before`` are deleted."""
        for delivery_id, d in list(self._deliveries.items()):
            if d.status is DeliveryStatus.DEAD and d.updated_at < before:
                del self._deliveries[delivery_id]
