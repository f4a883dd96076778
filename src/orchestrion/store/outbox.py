"""What the store keeps for outbound events: the outbox, and deliveries still owed or given up.

When event sinks are configured, the engine's commit copies each journal row of the turn into
``outbox`` in the same transaction (``CommitBatch.outbox``): an event is in the outbox exactly
when its transition is durable, and a ``kill -9`` after the commit loses nothing. The engine's
publisher (``engine/publishing.py``) drains it off the engine's turn: it publishes a page of
entries to every sink, then, in one transaction, deletes the page and records, per sink, each
event that sink did not take as a ``DeliveryRecord`` to retry with backoff. A delivery that
runs out of attempts is kept as ``dead`` (a dead letter) until an operator retries or drops it.
Rows are deleted only after publishing, so delivery is at least once: consumers deduplicate on
the event id.

The engine's own events that start workflows have an outbox too: the commit that ends an
execution whose workflow has followers records them as owed (``follows_owed``); the engine
settles the row once it started them, and an engine that stops or dies first leaves it to the
next engine on the database (``engine/emitting.py``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from orchestrion.store.base import EventRecord

__all__ = [
    "DeliveryRecord",
    "DeliveryStatus",
    "ForwardOutbox",
    "OutboxStore",
]


class DeliveryStatus(StrEnum):
    """Where an event a sink did not take is."""

    RETRY = "retry"  # published again at ``next_at``
    DEAD = "dead"  # out of attempts: kept until retried or dropped by an operator


@dataclass(slots=True)
class DeliveryRecord:
    """One event one sink has not taken. ``event`` is the envelope as published (JSON)."""

    sink: str
    event_id: str
    event: dict[str, Any]
    attempts: int
    next_at: float
    status: DeliveryStatus = DeliveryStatus.RETRY
    error: str | None = None
    created_at: float = 0.0
    updated_at: float = 0.0
    id: int = 0  # given by the store
    extra: dict[str, Any] = field(default_factory=dict)


class OutboxStore(Protocol):
    """The outbox side of a store (see the module docstring)."""

    async def outbox_page(self, limit: int = 256) -> list[EventRecord]:
        """The oldest outbox entries (``seq`` is the outbox's own order)."""

    async def outbox_size(self) -> int:
        """How many entries wait in the outbox."""

    async def settle_outbox(self, seqs: list[int], owed: list[DeliveryRecord]) -> None:
        """Delete the entries ``seqs`` and insert ``owed``, atomically."""

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        """Deliveries to retry whose ``next_at`` has come, oldest first."""

    async def settle_deliveries(self, done: list[int], changed: list[DeliveryRecord]) -> None:
        """Delete the deliveries ``done`` and update ``changed`` (attempts, next_at, status,
        error), atomically."""

    async def list_deliveries(
        self, status: DeliveryStatus | None = None, sink: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """Deliveries by id, oldest first."""

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord:
        """Raises ``ExecutionNotFound`` when absent."""

    async def count_deliveries(self) -> dict[tuple[str, DeliveryStatus], int]:
        """How many deliveries each sink owes, by status."""

    async def owes(self, sink: str, event_id: str) -> bool:
        """Whether ``sink`` owes the event ``event_id`` already (to retry, or dead)."""

    async def owed_follows(self, before: float, limit: int = 100) -> list[tuple[str, str]]:
        """Ended executions whose followers are owed (``CommitBatch.follows``), recorded at
        ``before`` or earlier, oldest first: (execution id, ``workflow.completed`` or
        ``workflow.failed``)."""

    async def settle_follow(self, execution_id: str) -> None:
        """The followers of ``execution_id`` are started (or none is owed any more)."""


class ForwardOutbox:
    """``OutboxStore`` handed over to ``forward_outbox()`` (for stores that wrap another)."""

    def forward_outbox(self) -> OutboxStore:
        raise NotImplementedError

    async def outbox_page(self, limit: int = 256) -> list[EventRecord]:
        return await self.forward_outbox().outbox_page(limit)

    async def outbox_size(self) -> int:
        return await self.forward_outbox().outbox_size()

    async def settle_outbox(self, seqs: list[int], owed: list[DeliveryRecord]) -> None:
        await self.forward_outbox().settle_outbox(seqs, owed)

    async def due_deliveries(self, now: float, limit: int = 100) -> list[DeliveryRecord]:
        return await self.forward_outbox().due_deliveries(now, limit)

    async def settle_deliveries(self, done: list[int], changed: list[DeliveryRecord]) -> None:
        await self.forward_outbox().settle_deliveries(done, changed)

    async def list_deliveries(
        self, status: DeliveryStatus | None = None, sink: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        return await self.forward_outbox().list_deliveries(status, sink, limit)

    async def get_delivery(self, delivery_id: int) -> DeliveryRecord:
        return await self.forward_outbox().get_delivery(delivery_id)

    async def count_deliveries(self) -> dict[tuple[str, DeliveryStatus], int]:
        return await self.forward_outbox().count_deliveries()

    async def owes(self, sink: str, event_id: str) -> bool:
        return await self.forward_outbox().owes(sink, event_id)

    async def owed_follows(self, before: float, limit: int = 100) -> list[tuple[str, str]]:
        return await self.forward_outbox().owed_follows(before, limit)

    async def settle_follow(self, execution_id: str) -> None:
        await self.forward_outbox().settle_follow(execution_id)
