"""``create_app``: the FastAPI application over one engine, and its lifespan.

The lifespan wires the engine's record listeners (event-stream wake-ups, metrics, the node
transition log), starts the engine when the app owns it and the retention sweep when the
governance policy sets ``retention.days``, and on shutdown stops them gracefully:
no new work, in-flight attempts get ``shutdown_grace`` seconds to finish, the rest stays in
the store and resumes at the next start. Under uvicorn that is what SIGTERM does. In scale-out
mode (``ORCHESTRION_REDIS_URL``) the lifespan also owns the API's link to Redis (the dead letter
queue, cluster health and metrics, shared rate limits), closed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from orchestrion import __version__
from orchestrion.api import apidocs, problems, signouts
from orchestrion.api.audit import AuditMiddleware
from orchestrion.api.auth import identifier, warn_if_open
from orchestrion.api.browser_guard import BrowserGuard, HostAllowList
from orchestrion.api.context import ApiContext
from orchestrion.api.flat_routes import include_flat
from orchestrion.api.foreign_commits import follow_foreign_commits
from orchestrion.api.gate import ApiGate
from orchestrion.api.hub import EventHub
from orchestrion.api.middleware import RequestMiddleware
from orchestrion.api.ratelimit import RateLimiter
from orchestrion.api.refusals import RefusalSummary
from orchestrion.api.routes import (
    admin,
    audit,
    compat_api_v1,
    compat_swarmlite,
    compat_unversioned,
    control,
    definitions,
    emitting,
    events,
    governance,
    health,
    hooks,
    inputs,
    logs,
    schedules,
    session,
    sinks,
    workflows,
)
from orchestrion.api.safe_json import SafeInputMiddleware, declare_text_parameters
from orchestrion.api.stream_slots import StreamSlots
from orchestrion.engine.facade import Engine
from orchestrion.engine.schedules import start_scheduler
from orchestrion.errors import OrchestrionError
from orchestrion.governance.retention import RetentionSweeper
from orchestrion.observability.feed import RecordFeed
from orchestrion.observability.logging_setup import log_transitions
from orchestrion.observability.metrics import Metrics
from orchestrion.observability.shared_metrics import SHARED_METRICS_DIR
from orchestrion.settings import Settings, load_settings

__all__ = ["api_context", "create_app"]

_SWEEP_LEASE = "retention"  # the lease of the retention sweep (governance/retention.py)

_DESCRIPTION = (
    "Durable workflow orchestration. Submit a DAG (JSON or YAML), trigger it, follow it. "
    "Errors are RFC 9457 problem documents; every response carries X-Request-ID."
)


def create_app(engine: Engine | None = None, settings: Settings | None = None) -> FastAPI:
    """The API over ``engine``, or over an engine of its own built from ``settings``.

    An engine passed in is started and stopped by its owner (the caller); one the app makes
    is started and stopped by the app's lifespan. Either way the engine enforces an untrusted
    governance from then on (the python allowlist applies to what the service runs).
    """
    if settings is None:
        settings = engine.settings if engine is not None else load_settings()
    owns_engine = engine is None
    if engine is None:
        # Scale-out (a Redis URL): the API hands executions to the orchestrators.
        engine = Engine(settings=settings, drive=not settings.redis_url)
    # Definitions submitted to the service come from others: the python allowlist applies.
    engine.use_governance(engine.governance.untrusted())
    # Server processes of one service (serve --workers N) answer /metrics for all of them.
    metrics = Metrics(os.environ.get(SHARED_METRICS_DIR) if settings.api_workers > 1 else None)
    ctx = ApiContext(
        engine=engine,
        settings=settings,
        metrics=metrics,
        # Streams share a read for at most half their poll interval (api/hub.py).
        hub=EventHub(shared_for=min(0.5, settings.sse_poll / 2)),
        limiter=RateLimiter.for_settings(settings),
        refusals=RefusalSummary(settings.refusal_summary_seconds),
        streams=StreamSlots(settings.sse_max_streams, settings.sse_max_streams_per_caller),
        # In-process apps answer any Host unless names are configured; `serve` adds its own.
        hosts=HostAllowList.of(settings.allowed_hosts) if settings.allowed_hosts else None,
    )
    metrics.watch_streams(lambda: ctx.streams.open)
    ctx.audit_status = engine.audit.chain_check  # /health/compliance: verified up to N
    feed = RecordFeed(engine, [metrics.observe, log_transitions])
    metrics.watch_sinks(lambda: engine.publisher)  # outbound events, when sinks are set
    metrics.watch_engine(lambda: engine.commit_faults)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        warn_if_open(settings)
        if settings.redis_url and ctx.redis is None:
            from orchestrion.cluster.link import RedisLink

            try:
                ctx.redis = RedisLink(settings.redis_url, settings.redis_prefix)  # connects on use
            except OrchestrionError as exc:  # a Redis URL that does not parse: one line
                ctx.startup_error = exc
                raise
        engine.add_listener(ctx.hub.notify)
        engine.add_listener(feed.listener)
        feed_task = asyncio.create_task(feed.run(), name="orchestrion-record-feed")
        refusals = asyncio.create_task(ctx.refusals.run(engine.audit), name="orchestrion-refusals")
        background = [feed_task]
        if metrics.shared is not None:
            publish = metrics.shared.keep_publishing()
            background.append(asyncio.create_task(publish, name="orchestrion-metrics"))
        if ctx.redis is not None and not engine.drives:
            # Orchestrators commit the records: their announcements wake the event streams.
            ctx.closing = False  # what ends the follower; a previous shutdown left it set
            follow = ctx.redis.follow_commits(
                lambda eid: ctx.hub.notify(eid, []), lambda: ctx.closing
            )
            background.append(asyncio.create_task(follow, name="orchestrion-follow-commits"))
        sweeper = RetentionSweeper.for_policy(  # retention.days of the policy
            engine.audit,
            interval=settings.retention_sweep_seconds,
            delay=min(60.0, settings.retention_sweep_seconds),
            # Every process of the service on this database has one: they take turns.
            lease=(
                lambda until, now: engine.leases.claim(_SWEEP_LEASE, until, now),
                lambda: engine.leases.release(_SWEEP_LEASE),
            ),
        )
        signed_out: asyncio.Task[None] | None = None
        try:
            if owns_engine:
                try:
                    await engine.start()
                except OrchestrionError as exc:  # a store or queue that cannot be used
                    ctx.startup_error = exc
                    raise
            if owns_engine and engine.drives and settings.scheduler:
                start_scheduler(engine)  # embedded mode: this process fires schedules
            if owns_engine and engine.drives and settings.api_workers > 1:
                # Sibling server processes drive executions this one streams.
                follow = follow_foreign_commits(ctx)
                background.append(asyncio.create_task(follow, name="orchestrion-foreign-commits"))
            if settings.api_keys:  # sessions exist: refuse those signed out, here or elsewhere
                await signouts.catch_up(engine.sign_outs, identifier(settings).sessions)
                signed_out = asyncio.create_task(
                    signouts.follow(engine.sign_outs, settings), name="orchestrion-sign-outs"
                )
            ctx.closing = False
            ctx.engine_running = True
            if sweeper is not None:
                sweeper.start()
            yield
        finally:
            ctx.engine_running = False
            ctx.begin_shutdown()
            if sweeper is not None:
                await sweeper.stop()
            refusals.cancel()
            if signed_out is not None:
                signed_out.cancel()
            await asyncio.gather(
                refusals, *([signed_out] if signed_out else []), return_exceptions=True
            )
            await ctx.refusals.flush(engine.audit)  # the last window, while the store is open
            try:
                if owns_engine:
                    await engine.stop(settings.shutdown_grace)
            finally:
                for task in background:
                    task.cancel()
                await asyncio.gather(*background, return_exceptions=True)
                await feed.drain()
                engine.remove_listener(feed.listener)
                engine.remove_listener(ctx.hub.notify)
                if ctx.redis is not None:
                    redis, ctx.redis = ctx.redis, None
                    with contextlib.suppress(Exception):  # closing must not hide the real error
                        await redis.aclose()

    app = FastAPI(
        title="Orchestrion",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=lifespan,
        separate_input_output_schemas=False,
        strict_content_type=False,  # api/browser_guard.py decides which content types pass
        docs_url=None,  # served by api/apidocs.py, from vendored files under a strict CSP
        redoc_url=None,
    )
    app.state.ctx = ctx
    problems.install(app)
    # Outermost first: RequestMiddleware (request id, body limit, access log, no-store)
    # > AuditMiddleware (sees every answer, the gate's too) > ApiGate (caller, rate limit,
    # 401 before routing) > BrowserGuard (Host, cross-site calls, simple-request bodies)
    # > SafeInputMiddleware (unsafe JSON bodies, paths, queries, headers: before any route).
    app.add_middleware(SafeInputMiddleware)
    app.add_middleware(BrowserGuard)
    app.add_middleware(ApiGate)
    app.add_middleware(AuditMiddleware)  # inside RequestMiddleware: the request id is known
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_body_bytes, metrics=metrics)
    routers = (
        workflows,
        control,
        definitions,
        events,
        logs,
        inputs,
        emitting,
        hooks,
        sinks,
        schedules,
        admin,
        audit,
        health,
        governance,
        session,
    )
    for module in routers:
        if module is workflows:  # the hot routes: matched once a request (api/flat_routes.py)
            include_flat(app, module.router)
        else:
            app.include_router(module.router)
    apidocs.install(app)
    # The reference descriptions' own paths, on the same routes (docs/API.md, "Compatibility").
    for surface in (compat_swarmlite, compat_unversioned, compat_api_v1):
        app.include_router(surface.router)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _problem_components(
                declare_text_parameters(
                    get_openapi(
                        title=app.title,
                        version=app.version,
                        description=app.description,
                        routes=app.routes,
                        separate_input_output_schemas=False,
                    )
                )
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def api_context(app: FastAPI) -> ApiContext:
    """The context of an app made by ``create_app`` (the serve command ends streams with it)."""
    ctx: ApiContext = app.state.ctx
    return ctx


def _problem_components(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the schema of the problem documents the responses refer to (by reference: see
    ``problems.error_responses``); leave out FastAPI's validation error schemas, unused."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name, body in problems.problem_schemas().items():
        components.setdefault(name, body)
    schema["components"]["schemas"] = dict(sorted(components.items()))
    text = repr(schema.get("paths", {}))
    for unused in ("HTTPValidationError", "ValidationError"):
        if unused in components and f"/{unused}'" not in text:
            del components[unused]
    return schema
