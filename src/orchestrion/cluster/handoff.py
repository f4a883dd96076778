"""The dispatcher of an engine that does not drive executions (the API in scale-out mode).

It runs nothing: starts and control requests go to the orchestrators through the shared
completions stream (or an owner's inbox). A Redis failure leaves it as a ``DispatchError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrion.cluster.connection import connect_redis, ensure_group, queue_errors
from orchestrion.cluster.replies import RepliesOnRedis
from orchestrion.cluster.sending import forward_event
from orchestrion.cluster.streams import ORCHESTRATOR_GROUP, StreamNames
from orchestrion.core.events import Event
from orchestrion.dispatch.base import ClusterDispatcher, EventRoute, EventSink, TaskMessage

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from orchestrion.cluster.on_wire import WireSealer
    from orchestrion.settings import Settings

__all__ = ["RedisHandoff"]


class RedisHandoff(RepliesOnRedis, ClusterDispatcher):
    """Forwards starts and control requests to orchestrators; see the module docstring.

    A ``ClusterDispatcher`` (declared, so mypy checks it against the protocol) whose routing,
    listening and liveness parts are empty: it reads no stream and drives nothing."""

    def __init__(self, url: str, settings: Settings, *, sealer: WireSealer | None = None) -> None:
        self.url = url
        self.names = StreamNames(settings.redis_prefix)
        self._redis: Redis | None = None
        self._sealer = sealer

    @property
    def redis(self) -> Redis:
        if self._redis is None:
            raise RuntimeError("dispatcher not started")
        return self._redis

    async def start(self, on_event: EventSink) -> None:
        self._redis = connect_redis(self.url)
        with queue_errors():
            await ensure_group(self._redis, self.names.completions, ORCHESTRATOR_GROUP)

    async def dispatch(self, tasks: list[TaskMessage]) -> None:
        raise RuntimeError("an engine that does not drive executions dispatches nothing")

    async def cancel(
        self, execution_id: str, node_id: str, attempt: int, kind: str = "run"
    ) -> None:
        return None

    def bind_router(self, router: EventRoute) -> None:
        return None  # it reads no stream: nothing is routed here

    def record_listener(self, execution_id: str, records: list[Any]) -> None:
        return None  # it drives nothing, so commits nothing others wait for

    def live_owners(self) -> set[str] | None:
        return None  # it sees no heartbeats: leases alone tell who is alive

    def owners_seen_at(self) -> float:
        return 0.0

    async def forward(self, owner: str | None, execution_id: str, event: Event) -> None:
        await forward_event(self.redis, self.names, self._sealer, owner, execution_id, event)

    async def close(self, grace: float = 0.0) -> None:
        if self._redis is not None:
            await self._redis.aclose()
            self._redis = None

    def in_flight(self) -> int:
        return 0

    def can_run_inline(self, handler: str, config: Mapping[str, Any]) -> bool:
        return False

    def run_inline(self, task: TaskMessage) -> list[Event] | None:
        return None
