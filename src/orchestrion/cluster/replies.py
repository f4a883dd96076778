"""Answers to forwarded requests: whether the orchestrator's machine applied a retry.

A process that drives nothing (the API in scale-out mode) forwards a retry with a ``reply``
key (``RetryRequested.reply``) and blocks on it for a while; the orchestrator that applies the
retry, or finds it changed nothing (another request's retry is under way, or nothing is left
to retry), pushes ``1`` or ``0`` there once its turn is committed. The key lives a minute: an
answer nobody waits for any more goes with it. No answer in time (the orchestrators are busy,
or one too old to answer) leaves the requester as it was, with the request handed over.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import TYPE_CHECKING

from orchestrion.core.events import Event, RetryRequested

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.cluster.streams import StreamNames

__all__ = ["new_reply_key", "reply_key_of", "send_reply", "wait_reply"]

_KEEP_SECONDS = 60
_APPLIED = b"1"


def new_reply_key(names: StreamNames) -> str:
    return names.reply(uuid.uuid4().hex)


def reply_key_of(event: Event) -> str | None:
    """The key a requester waits on for this event's answer, if it asked for one."""
    return event.reply if isinstance(event, RetryRequested) else None


async def send_reply(redis: Redis, key: str, applied: bool) -> None:
    """Answer on ``key`` (best effort: a requester that hears nothing says it handed over)."""
    with contextlib.suppress(Exception):
        async with redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, "1" if applied else "0")
            pipe.expire(key, _KEEP_SECONDS)
            await pipe.execute()


async def wait_reply(redis: Redis, key: str, timeout: float) -> bool | None:
    """True (applied), False (it changed nothing), or None when no answer came in time."""
    found = await redis.blpop([key], timeout=timeout)
    if found is None:
        return None
    with contextlib.suppress(Exception):
        await redis.delete(key)
    said = found[1]
    return (said.encode() if isinstance(said, str) else said) == _APPLIED
