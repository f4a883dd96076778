"""What operators do with the events a sink did not take: list them, retry, drop.

Each verb acts on the store, so any process on the database may use it (the API in scale-out
mode has no publisher): a retried delivery is due at once, with its attempts counted from zero
again, and the process holding the publisher lease sends it at its next pass.
"""

from __future__ import annotations

import time

from orchestrion.store.base import Store
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus

__all__ = ["drop_delivery", "retry_delivery"]


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
