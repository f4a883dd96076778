"""A worker's batched Redis commands, on a real Redis: nothing in flight outlives the client.

A command still being sent when the worker closes its client would open a connection again
that nothing closes (the test run fails on the unclosed socket); ``drain`` sends what is
queued and waits for it.
"""

from __future__ import annotations

import asyncio
import functools
import gc
from typing import Any

import pytest

from orchestrion.cluster.batching import Batch, Reads

pytest.importorskip("redis")

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline


def _push(pipe: Pipeline, *, key: str, value: int) -> Any:
    return pipe.rpush(key, value)


async def test_drain_sends_what_is_queued_before_the_client_closes(
    redis_server: str, redis_prefix: str
) -> None:
    redis = Redis.from_url(redis_server)
    batch = Batch(lambda: redis, transaction=True)
    reads = Reads(lambda: redis)
    key = f"{redis_prefix}:drained"
    # Queued in this tick: their pipeline would only be started on the next one.
    sent = [batch.add(functools.partial(_push, key=key, value=n)) for n in range(3)]
    read = reads.get(key)
    await batch.drain()
    await reads.drain()
    assert all(future.done() and future.exception() is None for future in sent)
    assert read.done()
    await redis.aclose()
    await asyncio.sleep(0)  # the call_soon of each add: it finds nothing left to send
    gc.collect()
    check = Redis.from_url(redis_server)
    try:
        assert await check.lrange(key, 0, -1) == [b"0", b"1", b"2"]
    finally:
        await check.aclose()


async def test_drain_waits_for_a_pipeline_already_sending(
    redis_server: str, redis_prefix: str
) -> None:
    redis = Redis.from_url(redis_server)
    batch = Batch(lambda: redis, transaction=False)
    key = f"{redis_prefix}:sending"
    future = batch.add(lambda pipe: pipe.set(key, "1"))
    await asyncio.sleep(0)  # the pipeline task starts and awaits its connection
    await batch.drain()
    assert future.done() and future.exception() is None
    await redis.aclose()
    gc.collect()  # an unclosed connection would fail the test here
    check = Redis.from_url(redis_server)
    try:
        assert await check.get(key) == b"1"
    finally:
        await check.aclose()


async def test_drain_with_nothing_queued_returns_at_once(redis_server: str) -> None:
    redis = Redis.from_url(redis_server)
    try:
        await Batch(lambda: redis, transaction=False).drain()
        await Reads(lambda: redis).drain()
    finally:
        await redis.aclose()
