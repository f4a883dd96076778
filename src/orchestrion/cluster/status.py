"""What Redis says about a scale-out deployment, for the API's ``/health`` and ``/metrics``.

``read_cluster`` takes a snapshot in a few round trips: one SCAN for the heartbeat keys and the
task streams, one pipeline for their values and depths plus the DLQ length, and the circuit
states (``CircuitBreakers.states``). Callers bound it with ``REDIS_TIMEOUT``: a Redis that is
down or slow must make a health check fail fast and leave ``/metrics`` answering. ``ping``
and ``read_cluster`` raise Redis failures as ``DispatchError``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from orchestrion.cluster.circuits import CircuitBreakers
from orchestrion.cluster.connection import queue_errors
from orchestrion.cluster.streams import WORKER_GROUP, StreamNames, text

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = ["REDIS_TIMEOUT", "Cluster", "StreamDepth", "ping", "read_cluster"]

REDIS_TIMEOUT = 2.0
"""Seconds a health check or a scrape waits for Redis."""

_SCAN_COUNT = 1000


@dataclass(frozen=True, slots=True)
class StreamDepth:
    """One task stream: entries in it (``length``) and those a worker holds (``pending``)."""

    name: str  # the part after ``{prefix}:tasks:``: a handler, plus ``+capability``...
    length: int
    pending: int

    @property
    def waiting(self) -> int:
        """Entries no worker has read yet (workers delete an entry once it is answered)."""
        return max(0, self.length - self.pending)


@dataclass(slots=True)
class Cluster:
    """A snapshot of the live processes and the queues of one Redis prefix."""

    workers: list[dict[str, Any]] = field(default_factory=list)
    orchestrators: list[dict[str, Any]] = field(default_factory=list)
    reapers: list[dict[str, Any]] = field(default_factory=list)
    streams: list[StreamDepth] = field(default_factory=list)
    dlq_size: int = 0
    circuits: list[dict[str, Any]] = field(default_factory=list)

    def workers_by_handler(self) -> dict[str, int]:
        """Live workers serving each handler."""
        counts = Counter(h for worker in self.workers for h in worker.get("handlers") or [])
        return dict(sorted(counts.items()))

    def workers_by_capability(self) -> dict[str, int]:
        """Live workers declaring each capability."""
        counts = Counter(c for worker in self.workers for c in worker.get("capabilities") or [])
        return dict(sorted(counts.items()))

    def open_circuits(self) -> list[dict[str, Any]]:
        """Circuits that are not closed (open, or half-open with a probe allowed)."""
        return [circuit for circuit in self.circuits if circuit["state"] != "closed"]


async def ping(redis: Redis) -> float:
    """Milliseconds a PING took."""
    started = time.perf_counter()
    with queue_errors():
        await redis.ping()
    return round((time.perf_counter() - started) * 1000, 3)


def _iso(at: Any) -> str | None:
    if not isinstance(at, int | float):
        return None
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def _heartbeat(raw: Any) -> dict[str, Any] | None:
    if raw is None:  # expired between SCAN and MGET: gone
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _worker(worker_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(data.get("id") or worker_id),
        "host": data.get("host"),
        "pid": data.get("pid"),
        "handlers": sorted(data.get("handlers") or []),
        "capabilities": sorted(data.get("capabilities") or []),
        "concurrency": int(data.get("concurrency") or 0),
        "in_flight": int(data.get("in_flight") or 0),
        "completed": int(data.get("completed") or 0),
        "last_seen_at": _iso(data.get("at")),
    }


def _orchestrator(owner: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "owner": owner,
        "host": data.get("host"),
        "pid": data.get("pid"),
        "last_seen_at": _iso(data.get("at")),
    }


def _reaper(name: str, data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(data.get("id") or f"reaper:{name}"),
        "host": data.get("host"),
        "pid": data.get("pid"),
        "last_sweep_at": _iso(data.get("last_sweep_at")),
        "last_seen_at": _iso(data.get("at")),
    }


def _pending(groups: Any) -> int:
    if not isinstance(groups, list):  # no consumer group yet (no worker serves it): none
        return 0
    for group in groups:
        if text(group.get("name")) == WORKER_GROUP:
            return int(group.get("pending") or 0)
    return 0


async def read_cluster(redis: Redis, prefix: str) -> Cluster:
    """The snapshot of ``prefix`` (see the module docstring); ``DispatchError`` when Redis
    fails."""
    with queue_errors():
        return await _read(redis, prefix)


async def _read(redis: Redis, prefix: str) -> Cluster:
    names = StreamNames(prefix)
    worker_prefix = names.worker("")
    orchestrator_prefix = names.orchestrator("")
    reaper_prefix = names.reaper("")
    task_prefix = names.tasks("")
    workers: list[str] = []
    orchestrators: list[str] = []
    reapers: list[str] = []
    streams: list[str] = []
    # One pass over the keyspace for the four kinds of keys (worker:, orchestrator:,
    # reaper:, tasks:), instead of one SCAN each; the guard keys, the bulk of it, never match.
    async for raw in redis.scan_iter(match=f"{prefix}:[ortw]*", count=_SCAN_COUNT):
        key = text(raw)
        if key.startswith(worker_prefix):
            workers.append(key)
        elif key.startswith(orchestrator_prefix):
            orchestrators.append(key)
        elif key.startswith(reaper_prefix):
            reapers.append(key)
        elif key.startswith(task_prefix):
            streams.append(key)
    workers.sort()
    orchestrators.sort()
    reapers.sort()
    streams.sort()
    async with redis.pipeline(transaction=False) as pipe:
        pipe.xlen(names.dlq)
        if workers:
            pipe.mget(workers)
        if orchestrators:
            pipe.mget(orchestrators)
        if reapers:
            pipe.mget(reapers)
        for stream in streams:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
        replies = iter(await pipe.execute(raise_on_error=False))
    dlq_size = next(replies)
    snapshot = Cluster(dlq_size=dlq_size if isinstance(dlq_size, int) else 0)
    for key, raw in zip(workers, next(replies) if workers else [], strict=True):
        data = _heartbeat(raw)
        if data is not None:
            snapshot.workers.append(_worker(key[len(worker_prefix) :], data))
    for key, raw in zip(orchestrators, next(replies) if orchestrators else [], strict=True):
        data = _heartbeat(raw)
        if data is not None:
            snapshot.orchestrators.append(_orchestrator(key[len(orchestrator_prefix) :], data))
    for key, raw in zip(reapers, next(replies) if reapers else [], strict=True):
        data = _heartbeat(raw)
        if data is not None:
            snapshot.reapers.append(_reaper(key[len(reaper_prefix) :], data))
    for stream in streams:
        length, groups = next(replies), next(replies)
        if not isinstance(length, int):  # the key is not a stream (nothing of ours)
            continue
        snapshot.streams.append(StreamDepth(stream[len(task_prefix) :], length, _pending(groups)))
    snapshot.circuits = await CircuitBreakers(redis, prefix).states()
    return snapshot
