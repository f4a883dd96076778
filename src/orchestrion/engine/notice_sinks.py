"""``SinkNotices``: routing's notices carried by the event sinks, durably.

A notice sink (the ``deliver(notices)`` protocol routing's notice delivery calls after the
commit that journalled the notices) whose ``deliver`` returns once each notice is stored as a
delivery owed to every event sink its addresses name as ``sink:<name>``: from then on the
publisher (``engine/publishing.py``) sends it like any event, with retries, backoff and dead
letters, and a crash loses nothing. Each is an ``execution.notice`` event whose ``data`` is
the notice (``to_dict``) and whose id derives from the notice's key: a notice given again
while its sink still owes it is not owed twice, and one given again after it went out (a
resend after a crash) reaches the consumer with the same id. An address naming no configured
sink is logged and skipped; other addresses (``mailto:``...) are for other notice sinks.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrion.errors import ExecutionNotFound
from orchestrion.sinks.envelope import OutboundEvent
from orchestrion.store.outbox import DeliveryRecord, DeliveryStatus

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["NOTICE_TYPE", "SINK_ADDRESS", "SinkNotices"]

logger = logging.getLogger(__name__)

NOTICE_TYPE = "execution.notice"
SINK_ADDRESS = "sink:"
_MAX_ADDRESSES = 32


class SinkNotices:
    """Carries notices through the event sinks their addresses name (see the module doc)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def deliver(self, notices: Sequence[Any]) -> None:
        """Store each notice as owed to its sinks; raises ``StoreError`` when it cannot (the
        caller tries again)."""
        engine = self._engine
        config = engine.sinks_config
        configured = {sink.name for sink in config.sinks} if config is not None else set()
        owed: list[DeliveryRecord] = []
        now = time.time()
        for notice in notices:
            names = _sink_names(getattr(notice, "addresses", ()))
            for name in [n for n in names if n not in configured]:
                logger.warning(
                    "notice %s names sink '%s', which is not configured", notice.key, name
                )
            names = [n for n in names if n in configured]
            if not names:
                continue
            event = await self._event(notice)
            # The same notice again (a retry, a resend after a crash): not owed twice. One
            # sent already may go again (at least once): its id is the same.
            names = [n for n in names if not await engine.store.owes(n, event.id)]
            owed.extend(
                DeliveryRecord(
                    sink=name,
                    event_id=event.id,
                    event=event.payload,
                    attempts=0,
                    next_at=now,
                    status=DeliveryStatus.RETRY,
                    created_at=now,
                    updated_at=now,
                )
                for name in names
            )
        if owed:
            await engine.store.settle_outbox([], owed)
            if engine.publisher is not None:
                engine.publisher.wake()

    async def _event(self, notice: Any) -> OutboundEvent:
        correlation: str | None = None
        try:
            record = await self._engine.store.get_execution(notice.execution_id)
            correlation = record.correlation_id
        except ExecutionNotFound:
            pass
        digest = hashlib.sha256(str(notice.key).encode()).hexdigest()[:32]
        masker = self._engine.governance.masker  # as for every outbound event
        return OutboundEvent.build(
            event_id=f"notice-{digest}",
            event_type=NOTICE_TYPE,
            execution_id=notice.execution_id,
            at=float(notice.at),
            data=notice.to_dict() if masker is None else masker.mask_value(notice.to_dict()),
            correlation_id=correlation,
            causation_id=None,
            workflow=getattr(notice, "workflow", None) or None,
            node_id=getattr(notice, "node", None),
        )


def _sink_names(addresses: Any) -> list[str]:
    names: list[str] = []
    for address in list(addresses or ())[:_MAX_ADDRESSES]:
        if isinstance(address, str) and address.startswith(SINK_ADDRESS):
            name = address[len(SINK_ADDRESS) :]
            if name and name not in names:
                names.append(name)
    return names
