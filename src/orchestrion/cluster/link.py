"""The link to the Redis of a scale-out deployment for the processes that do not run it.

The API does not drive executions; it reads what Redis says about the cluster (``/health``,
``/metrics``), operates the dead letter queue, shares its rate-limit buckets with the other
replicas, hears which executions the orchestrators committed, and reads the item counts of
the maps workers run (``cluster/progress.py``). The app's lifespan makes
one ``RedisLink`` and closes it; ``orchestrion dlq`` makes one per command. It connects on
first use. Every failure it lets out is a ``DispatchError``.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrion.cluster.channels import follow_commits
from orchestrion.cluster.connection import connect_redis
from orchestrion.cluster.dlq import DeadLetters
from orchestrion.cluster.progress import read_progress
from orchestrion.cluster.rate_buckets import RedisRateBuckets
from orchestrion.cluster.status import Cluster, ping, read_cluster
from orchestrion.cluster.streams import StreamNames

__all__ = ["RedisLink"]


class RedisLink:
    """One client for those uses of Redis under ``prefix``; see the module docstring."""

    def __init__(self, url: str, prefix: str) -> None:
        self.prefix = prefix
        self.names = StreamNames(prefix)
        self._redis = connect_redis(url)  # a ConfigurationError for a malformed URL
        self.rate_buckets = RedisRateBuckets(self._redis, prefix)
        self.dead_letters = DeadLetters(self._redis, self.names)

    async def ping(self) -> float:
        """Milliseconds a PING took."""
        return await ping(self._redis)

    async def read_cluster(self) -> Cluster:
        """The live processes and the queues (``cluster/status.py``)."""
        return await read_cluster(self._redis, self.prefix)

    async def follow_commits(
        self, on_commit: Callable[[str], None], stopped: Callable[[], bool]
    ) -> None:
        """Call ``on_commit(execution_id)`` for every commit orchestrators announce, until
        ``stopped()`` (resubscribing after failures: it never raises them)."""
        await follow_commits(self._redis, self.names, on_commit, stopped)

    async def node_progress(self, execution_id: str) -> dict[str, dict[str, int]]:
        """The item counts workers last wrote for the execution's map nodes (never raises)."""
        return await read_progress(self._redis, self.names, execution_id)

    async def aclose(self) -> None:
        await self._redis.aclose()
