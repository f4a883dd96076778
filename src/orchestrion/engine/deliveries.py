"""``SinkDeliveries`` (``engine.deliveries``): the events a sink did not take, for operators.

Each verb acts on the store, so any process on the database may use it (the API in scale-out
mode has no publisher): a retried delivery is due at once, with its attempts counted from zero
again, and the process holding the publisher lease sends it at its next pass.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrion.store.base import Store
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus

if TYPE_CHECKING:
    from orchestrion.engine.publishing import Publisher

__all__ = ["SinkDeliveries", "drop_delivery", "retry_delivery"]


class SinkDeliveries:
    """The delivery verbs of one engine."""

    def __init__(
        self, store: Callable[[], Store], publisher: Callable[[], Publisher | None]
    ) -> None:
        self._store = store
        self._publisher = publisher

    async def counts(self) -> dict[tuple[str, DeliveryStatus], int]:
        """How many events each sink owes, by status."""
        return await self._store().count_deliveries()

    async def backlog(self) -> int:
        """Outbox entries not published yet."""
        return await self._store().outbox_size()

    async def list(
        self, status: DeliveryStatus | None = None, sink: str | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        return await self._store().list_deliveries(status, sink, limit)

    async def retry(self, delivery_id: int) -> DeliveryRecord:
        """Make the delivery due now. Raises ``ExecutionNotFound``."""
        delivery = await retry_delivery(self._store(), delivery_id)
        publisher = self._publisher()
        if publisher is not None:
            publisher.wake()
        return delivery

    async def drop(self, delivery_id: int) -> DeliveryRecord:
        """Forget the delivery. Raises ``ExecutionNotFound``."""
        return await drop_delivery(self._store(), delivery_id)


async def retry_delivery(store: Store, delivery_id: int) -> DeliveryRecord:
    """Make the delivery due now (a dead letter too). Raises ``ExecutionNotFound``."""
    delivery = await store.get_delivery(delivery_id)
    delivery.status, delivery.attempts = DeliveryStatus.RETRY, 0
    delivery.next_at = delivery.updated_at = time.time()
    await store.settle_deliveries([], [delivery])
    return delivery


async def drop_delivery(store: Store, delivery_id: int) -> DeliveryRecord:
    """Forget the delivery: its sink never gets the event. Raises ``ExecutionNotFound``."""
    delivery = await store.get_delivery(delivery_id)
    await store.settle_deliveries([delivery_id], [])
    return delivery
