"""``RedisStreamSink``: append each event to a Redis Stream (an event sink, ``sinks/base.py``).

Each entry has the fields ``id`` (the event id), ``type``, ``execution_id`` and ``event`` (the
event's JSON); the stream is trimmed to about ``maxlen`` entries (``MAXLEN ~``). A page is one
pipeline, one round trip. Consumers read it with their own consumer groups; delivery is at
least once, so they deduplicate on ``id``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from orchestrion.cluster.connection import connect_redis
from orchestrion.sinks.base import Configured, Outcome, all_failed, describe
from orchestrion.sinks.config import RedisStreamSinkConfig
from orchestrion.sinks.envelope import OutboundEvent

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["RedisStreamSink"]

_TIMEOUT = 10.0


class RedisStreamSink(Configured[RedisStreamSinkConfig]):
    """Appends events to one stream (see the module docstring)."""

    def __init__(self, config: RedisStreamSinkConfig, url: str) -> None:
        self.config = config
        self._url = url
        self._redis: Redis | None = None

    async def publish(
        self, events: Sequence[OutboundEvent], *, deadline: float | None = None
    ) -> list[Outcome]:
        if not events:
            return []
        if self._redis is None:
            self._redis = connect_redis(self._url)
        pipe = self._redis.pipeline(transaction=False)
        for event in events:
            fields: dict[Any, Any] = {
                "id": event.id,
                "type": event.type,
                "execution_id": event.execution_id,
                "event": event.body,
            }
            pipe.xadd(self.config.stream, fields, maxlen=self.config.maxlen, approximate=True)
        try:
            async with asyncio.timeout(_TIMEOUT):
                replies = await pipe.execute(raise_on_error=False)
        except TimeoutError:
            return all_failed(events, f"Redis did not answer in {_TIMEOUT:g} s")
        except Exception as exc:  # redis-py's errors: connection refused, auth, ...
            return all_failed(events, describe(exc))
        return [describe(r) if isinstance(r, BaseException) else None for r in replies]

    async def close(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()
