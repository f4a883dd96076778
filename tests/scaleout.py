"""Scale-out mode inside one test process: an engine on PostgreSQL + Redis Streams with workers.

The engine is an orchestrator (``RedisDispatcher``); the workers read the task streams as
separate ``Worker`` objects would in their own processes, so every attempt crosses Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from orchestrion.cluster.worker import Worker
from orchestrion.engine.facade import Engine
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.registry import HandlerRegistry, default_registry
from orchestrion.settings import Settings, load_settings

__all__ = ["scaleout_engine", "scaleout_settings", "until"]


def scaleout_settings(postgres_url: str, redis_url: str, prefix: str, **extra: Any) -> Settings:
    return load_settings(
        database_url=postgres_url,
        redis_url=redis_url,
        redis_prefix=prefix,
        heartbeat_seconds=0.5,
        **extra,
    )


@asynccontextmanager
async def scaleout_engine(
    postgres_url: str,
    redis_url: str,
    prefix: str,
    *,
    workers: int = 1,
    concurrency: int = 64,
    registry: HandlerRegistry | None = None,
    settings: dict[str, Any] | None = None,
    worker_governance: Governance | None = None,
    **engine_kwargs: Any,
) -> AsyncIterator[Engine]:
    """``worker_governance``: the workers' own (by default, built from the settings)."""
    config = scaleout_settings(postgres_url, redis_url, prefix, **(settings or {}))
    registry = registry or default_registry()
    pool = [
        Worker(
            redis_url,
            config,
            registry,
            concurrency=concurrency,
            worker_id=f"w{i}",
            governance=worker_governance,
        )
        for i in range(workers)
    ]
    for worker in pool:
        await worker.start()
    try:
        async with Engine(settings=config, registry=registry, **engine_kwargs) as engine:
            engine.workers = pool  # type: ignore[attr-defined]
            yield engine
    finally:
        for worker in pool:
            await worker.stop(grace=0)


@asynccontextmanager
async def scaleout_api(postgres_url: str, redis_url: str, prefix: str) -> AsyncIterator[Engine]:
    """A cluster (``scaleout_engine``) and, beside it, an engine as an API process has one:
    it drives nothing, so what it is asked goes to the orchestrator (over Redis)."""
    settings = scaleout_settings(postgres_url, redis_url, prefix)
    async with (
        scaleout_engine(postgres_url, redis_url, prefix),
        Engine(settings=settings, drive=False) as api,
    ):
        yield api


@asynccontextmanager
async def engine_for(database_url: str, request: Any, **kwargs: Any) -> AsyncIterator[Engine]:
    """An embedded engine on ``database_url``, or scale-out when it is ``"scaleout"``
    (PostgreSQL and Redis from the test servers)."""
    if database_url != "scaleout":
        async with Engine(database_url, **kwargs) as engine:
            yield engine
        return
    postgres_url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_server")
    prefix = request.getfixturevalue("redis_prefix")
    async with scaleout_engine(postgres_url, redis_url, prefix, **kwargs) as engine:
        yield engine


async def until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    """Poll ``check`` every 50 ms until it is true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not {what} after {timeout}s")
        await asyncio.sleep(0.05)
