"""Pub/sub on Redis: cancel requests for workers, and commit announcements for the API.

A channel is a wake-up, never the only way a thing is learned: a message lost while a
subscriber reconnects costs a delay (the journal is polled), not a result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrion.cluster.streams import StreamNames

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["follow_commits", "listen_channel"]

logger = logging.getLogger(__name__)


async def listen_channel(
    redis: Redis,
    channel: str,
    on_message: Callable[[Any], None],
    stopped: Callable[[], bool],
) -> None:
    """Call ``on_message(data)`` for each message published on ``channel`` until
    ``stopped()``; resubscribes after Redis errors.

    It polls with a one-second timeout instead of waiting on ``listen()``: redis-py swallows
    a cancellation that lands while a subscription connects, and a reader waiting for the
    next message would then never end. Checking ``stopped`` bounds every shutdown."""
    from redis.exceptions import RedisError

    while not stopped():
        pubsub = redis.pubsub()
        try:
            await pubsub.subscribe(channel)
            while not stopped():
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                if message is not None and message.get("type") == "message":
                    on_message(message["data"])
        except (RedisError, OSError) as exc:
            logger.warning("listening on %s failed (%s); resubscribing", channel, exc)
            await asyncio.sleep(1.0)
        finally:
            with contextlib.suppress(Exception):
                await pubsub.aclose()


async def follow_commits(
    redis: Redis,
    names: StreamNames,
    on_commit: Callable[[str], None],
    stopped: Callable[[], bool],
) -> None:
    """Call ``on_commit(execution_id)`` for every commit orchestrators announce, until
    ``stopped()``."""

    def announced(data: Any) -> None:
        try:
            ids = json.loads(data)
        except ValueError:
            return
        for execution_id in ids if isinstance(ids, list) else []:
            on_commit(str(execution_id))

    await listen_channel(redis, names.commits_channel, announced, stopped)
