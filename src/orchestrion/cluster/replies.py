"""Answers to forwarded requests: whether the orchestrator's machine applied a retry or a
decision.

A process that drives nothing (the API in scale-out mode) forwards a retry or an approve or
reject with a ``reply`` key (``RetryRequested.reply``, ``WaitResolved.reply``) and blocks on it
for a while; the orchestrator that applies the request, or finds it changed nothing (another
request got there first, or nothing is left to do), pushes ``1`` or ``0`` there once its turn
is committed. The key lives a minute: an answer nobody waits for any more goes with it. No
answer in time (the orchestrators are busy, or one too old to answer) leaves the requester as
it was, with the request handed over.

A decision is also held, before it is forwarded, under a key of its node's wait
(``StreamNames.decision``): a second decision for the same wait, from any API process, finds
it there and is refused instead of racing the first, also when the first is not confirmed yet
(its orchestrator died). The orchestrator that applies or refuses the decision lets the hold
go; one never answered expires after ``DECISION_HOLD_SECONDS``, and then the journal still
tells both apart: a decision that finds the node no longer waiting is journalled as refused.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import Event, RetryRequested, WaitResolved

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.cluster.streams import StreamNames

__all__ = [
    "DECISION_HOLD_SECONDS",
    "RepliesOnRedis",
    "hold_decision",
    "new_reply_key",
    "release_decision",
    "reply_key_of",
    "send_reply",
    "wait_reply",
]

_KEEP_SECONDS = 60
DECISION_HOLD_SECONDS = 600
_APPLIED = b"1"


def new_reply_key(names: StreamNames) -> str:
    return names.reply(uuid.uuid4().hex)


def reply_key_of(event: Event) -> str | None:
    """The key a requester waits on for this event's answer, if it asked for one."""
    return event.reply if isinstance(event, RetryRequested | WaitResolved) else None


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


async def hold_decision(redis: Redis, key: str, holder: dict[str, Any]) -> dict[str, Any] | None:
    """Hold a node's wait for one decision (``holder``: its reply key, verb and decider);
    None when held now, else the holder of the decision already under way."""
    text = json.dumps(holder, separators=(",", ":"))
    if await redis.set(key, text, nx=True, ex=DECISION_HOLD_SECONDS):
        return None
    found = await redis.get(key)
    if found is None:  # let go meanwhile: this one may hold it now
        return await hold_decision(redis, key, holder)
    try:
        other = json.loads(found)
    except ValueError:
        other = None
    return other if isinstance(other, dict) else {}


async def release_decision(redis: Redis, key: str, reply: str) -> None:
    """Let a node's wait go, if the decision answered on ``reply`` still holds it (best
    effort: the hold expires anyway)."""
    with contextlib.suppress(Exception):
        found = await redis.get(key)
        if found is None:
            return
        with contextlib.suppress(ValueError):
            if json.loads(found).get("reply") == reply:
                await redis.delete(key)


class RepliesOnRedis:
    """A Redis dispatcher's side of the reply channel and of decision holds (the methods
    ``ClusterDispatcher`` names), for a class with ``redis`` and ``names``."""

    names: StreamNames

    @property
    def redis(self) -> Redis:
        raise NotImplementedError

    def reply_key(self) -> str:
        return new_reply_key(self.names)

    async def wait_reply(self, key: str, timeout: float) -> bool | None:
        return await wait_reply(self.redis, key, timeout)

    async def hold_decision(
        self, execution_id: str, node_id: str, attempt: int, holder: dict[str, Any]
    ) -> dict[str, Any] | None:
        key = self.names.decision(execution_id, node_id, attempt)
        return await hold_decision(self.redis, key, holder)

    async def release_decision(
        self, execution_id: str, node_id: str, attempt: int, reply: str
    ) -> None:
        key = self.names.decision(execution_id, node_id, attempt)
        await release_decision(self.redis, key, reply)
