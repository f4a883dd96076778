"""The dispatcher an engine makes for itself when none is given, and its wiring to a cluster.

In-process workers; with ``redis_url``, Redis Streams (the local dispatcher then runs only
what needs this engine: child executions); for an engine that does not drive executions (the
API in scale-out mode), a hand-off that only forwards starts and control requests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrion.dispatch.base import ClusterDispatcher, Dispatcher, cluster_of
from orchestrion.settings import load_secrets

if TYPE_CHECKING:
    import httpx

    from orchestrion.engine.children import ChildExecutions
    from orchestrion.engine.facade import Engine
    from orchestrion.engine.loop import RecordListener
    from orchestrion.engine.ownership import Ownership
    from orchestrion.engine.scaleout import ScaleOutHooks
    from orchestrion.handlers.base import Resources

__all__ = ["default_dispatcher", "join_cluster"]

ReportProgress = Callable[[str, str, dict[str, int]], None]


def default_dispatcher(
    engine: Engine,
    resources: Resources,
    children: ChildExecutions,
    report_progress: ReportProgress,
) -> Dispatcher:
    """The dispatcher ``engine``'s settings call for (see the module docstring)."""
    settings = engine.settings
    if not settings.redis_url:
        return _local_dispatcher(engine, resources, children, report_progress)
    from orchestrion.cluster.on_wire import WireSealer

    # Classified values cross Redis sealed with the policy's keys (cluster/on_wire.py).
    sealer = WireSealer.of(engine.governance, engine.store)
    if not engine.drives:
        from orchestrion.cluster.handoff import RedisHandoff

        return RedisHandoff(settings.redis_url, settings, sealer=sealer)
    local = _local_dispatcher(engine, resources, children, report_progress)
    from orchestrion.cluster.dispatcher import RedisDispatcher

    return RedisDispatcher(
        settings.redis_url,
        settings,
        local=local,
        canonical=engine.registry.canonical_name,
        sealer=sealer,
    )


def _local_dispatcher(
    engine: Engine,
    resources: Resources,
    children: ChildExecutions,
    report_progress: ReportProgress,
) -> Dispatcher:
    from orchestrion.execution.executor import NodeExecutor
    from orchestrion.execution.local import LocalDispatcher
    from orchestrion.execution.log_capture import log_limits
    from orchestrion.handlers import function_threads
    from orchestrion.handlers.resources import Children

    def http_client() -> httpx.AsyncClient:
        # Imported with the first http or llm attempt, like the http handler itself.
        from orchestrion.handlers.http import build_http_client

        return build_http_client(
            timeout=engine.settings.http_timeout,
            max_connections=engine.settings.http_max_connections,
            # Connections go only to addresses the policy in force checked (DNS
            # rebinding); read per connection, so a later ``use_governance`` is followed.
            url_policy=lambda: engine.governance.url_policy,
        )

    resources.http_factory = http_client
    resources.children = Children(children.start, children.await_child)
    resources.progress = report_progress
    function_threads.configure(engine.settings.python_threads)
    executor = NodeExecutor(
        engine.registry,
        resources,
        load_secrets(engine.settings),
        logs=log_limits(engine.settings, engine.governance.masker),
        stable_configs=True,
        error_chars=engine.settings.node_error_max_chars,
    )
    return LocalDispatcher(executor, engine.concurrency)


def join_cluster(
    engine: Engine,
    dispatcher: Dispatcher,
    ownership: Ownership,
    hooks: ScaleOutHooks,
    listeners: list[RecordListener],
) -> ClusterDispatcher | None:
    """``dispatcher`` as a cluster one, wired to ``engine``: the events read from the shared
    streams are routed through the engine, and what it commits is told to the others. None
    for a dispatcher of one process."""
    cluster = cluster_of(dispatcher)
    if cluster is not None:
        from orchestrion.engine.routing import EventRouter

        cluster.bind_router(EventRouter(engine, cluster, ownership, hooks))
        if cluster.record_listener not in listeners:
            listeners.append(cluster.record_listener)  # tells others what was committed
    return cluster
