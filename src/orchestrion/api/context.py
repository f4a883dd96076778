"""What every request handler can reach: the engine, the settings and the app's helpers.

In scale-out mode (``ORCHESTRION_REDIS_URL``) it also holds the API's own link to Redis
(``cluster/link.py``), made and closed by the app's lifespan, for the dead letter queue, the
health of the cluster and the shared rate-limit buckets.

One ``ApiContext`` lives in ``app.state.ctx``; routes get it through the ``get_ctx``
dependency. The request id of the request being served is kept in a context variable so that
log lines and problem documents can carry it without threading it through every call.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import HTTPConnection

from orchestrion.api.definition_cache import CheckedDefinitions
from orchestrion.logcontext import current_request_id, request_id_var

if TYPE_CHECKING:
    from orchestrion.api.browser_guard import HostAllowList
    from orchestrion.api.hub import EventHub
    from orchestrion.api.ratelimit import RateLimiter
    from orchestrion.api.refusals import RefusalSummary
    from orchestrion.api.stream_slots import StreamSlots
    from orchestrion.cluster.link import RedisLink
    from orchestrion.engine.facade import Engine
    from orchestrion.errors import OrchestrionError
    from orchestrion.observability.metrics import Metrics
    from orchestrion.settings import Settings

__all__ = ["ApiContext", "AuditStatus", "current_request_id", "get_ctx", "request_id_var"]

AuditStatus = Callable[[], Awaitable[dict[str, Any] | None]]
"""Checks the audit chain: ``{"verified": bool, "records": int, "detail": str}`` or None
(not checked); /health/compliance reports it."""


@dataclass(slots=True)
class ApiContext:
    """The engine and helpers one application serves with."""

    engine: Engine
    settings: Settings
    metrics: Metrics
    hub: EventHub
    limiter: RateLimiter
    refusals: RefusalSummary  # requests refused before authentication, audited in summary
    streams: StreamSlots  # the event streams open now, and their limits
    engine_running: bool = field(default=False)  # set by the lifespan; health reports it
    closing: bool = field(default=False)  # the server is stopping: event streams end
    redis: RedisLink | None = field(default=None)  # scale-out only; set by the lifespan
    audit_status: AuditStatus | None = field(default=None)  # set by the audit trail, if any
    startup_error: OrchestrionError | None = field(default=None)  # why the engine did not start
    hosts: HostAllowList | None = field(default=None)  # the Host names answered (None: any)
    checked: CheckedDefinitions = field(default_factory=CheckedDefinitions)  # by their text

    def begin_shutdown(self) -> None:
        """End event streams now, so a stopping server is not held open by them."""
        self.closing = True
        self.hub.close()


async def get_ctx(conn: HTTPConnection) -> ApiContext:
    """FastAPI dependency: the application's context.

    ``async``: FastAPI runs a plain ``def`` dependency on its thread pool, a thread hop (and
    a GIL hand-over) on every request for one attribute read."""
    ctx: ApiContext = conn.app.state.ctx
    return ctx
