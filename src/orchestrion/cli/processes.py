"""Scale-out processes on the command line: ``orchestrator``, ``worker``, ``reaper``, ``migrate``.

Each runs until SIGTERM or Ctrl-C and then stops gracefully: a worker lets its running attempts
finish for the shutdown grace period and leaves the rest to be reclaimed; an orchestrator
commits what it has applied and hands its executions back. They take their configuration from
the ``ORCHESTRION_`` environment (``DATABASE_URL``, ``REDIS_URL``...) and the options given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from orchestrion.cli import early_signals
from orchestrion.cli.exits import EXIT_INVALID, EXIT_STORE
from orchestrion.cli.local import database_url
from orchestrion.cli.options import DbOption
from orchestrion.cli.terminal import err, fail
from orchestrion.store.url_display import redacted_url

if TYPE_CHECKING:
    from orchestrion.settings import Settings

__all__ = ["migrate", "orchestrator", "reaper", "worker"]

logger = logging.getLogger(__name__)

RedisOption = Annotated[
    str | None,
    typer.Option("--redis", help="Redis URL (default: $ORCHESTRION_REDIS_URL)."),
]
LogFormatOption = Annotated[
    str,
    typer.Option(
        "--log-format",
        envvar="ORCHESTRION_LOG_FORMAT",
        help="json (default) or console.",
        case_sensitive=False,
    ),
]


def _cluster_governance(settings: Any) -> Any:
    """The policy of a scale-out process: untrusted, as definitions come through the service
    (each task's own level is applied too, and the stricter of the two holds)."""
    from orchestrion.errors import ConfigurationError
    from orchestrion.governance.runtime import Governance

    try:
        return Governance.from_settings(settings, trusted=False)
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))


def _settings(db: str | None, redis: str | None, *, need_redis: bool = True) -> Any:
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    overrides: dict[str, Any] = {}
    if db is not None:
        overrides["database_url"] = database_url(db, create=True)
    if redis is not None:
        overrides["redis_url"] = redis
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))
    if need_redis and not settings.redis_url:
        fail(
            EXIT_INVALID, "no Redis: set ORCHESTRION_REDIS_URL or pass --redis redis://host:6379/0"
        )
    return settings


def _until_signal(
    fmt: str, settings: Settings, body: Callable[[asyncio.Event], Awaitable[None]]
) -> None:
    """Configure logging (masked by the governance policy), run ``body(stop)`` and set
    ``stop`` on SIGTERM/SIGINT."""
    from orchestrion.errors import ConfigurationError, DispatchError, StoreError
    from orchestrion.governance.runtime import Governance
    from orchestrion.observability.logging_setup import configure_logging

    if fmt.lower() not in ("json", "console"):
        fail(EXIT_INVALID, f"--log-format must be json or console, not {fmt!r}")
    try:
        masker = Governance.from_settings(settings).masker
    except ConfigurationError as exc:  # an invalid policy names its field and line
        fail(EXIT_INVALID, str(exc))
    configure_logging(
        "console" if fmt.lower() == "console" else "json", settings.log_level, masker=masker
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        if early_signals.requested():
            stop.set()
        await body(stop)

    try:
        asyncio.run(main())
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))
    except (StoreError, OSError) as exc:
        fail(EXIT_STORE, str(exc))
    except DispatchError as exc:
        fail(EXIT_STORE, f"Redis: {exc}")


async def _start_when_reachable(make: Callable[[], Any], stop: asyncio.Event) -> Any:
    """Start what ``make`` builds, waiting (with backoff) while PostgreSQL or Redis does not
    answer yet, so processes can start in any order. None when stopped before that."""
    from orchestrion.errors import DispatchError, StoreError

    delay = 0.5
    while not stop.is_set():
        thing = make()
        try:
            await thing.start()
            return thing
        except (StoreError, DispatchError, OSError) as exc:
            logger.warning("cannot start yet (%s); trying again in %.1fs", exc, delay)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        delay = min(10.0, delay * 2)
    return None


def orchestrator(
    db: DbOption = None,
    redis: RedisOption = None,
    log_format: LogFormatOption = "json",
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port", min=1, max=65535, help="Serve Prometheus metrics on this port."
        ),
    ] = None,
) -> None:
    """Drive executions: consume completions, resolve dependencies, dispatch the next wave.

    Takes over the executions of orchestrators that died, and the starts the API hands over.
    Node transitions are logged here (structured, with execution and node ids), and counted
    in the metrics of --metrics-port.
    """
    early_signals.defer()
    settings = _settings(db, redis)
    governance = _cluster_governance(settings)

    async def body(stop: asyncio.Event) -> None:
        from orchestrion.engine.facade import Engine
        from orchestrion.engine.schedules import start_scheduler
        from orchestrion.observability.feed import RecordFeed
        from orchestrion.observability.logging_setup import log_transitions

        engine = await _start_when_reachable(
            lambda: Engine(settings=settings, governance=governance), stop
        )
        if engine is None:
            return
        if settings.scheduler:
            start_scheduler(engine)  # one orchestrator at a time fires: the lease decides
        sinks: list[Any] = [log_transitions]
        if metrics_port is not None:
            from prometheus_client import start_http_server

            from orchestrion.observability.metrics import Metrics

            metrics = Metrics()
            sinks.append(metrics.observe)
            metrics.watch_sinks(lambda: engine.publisher)
            metrics.watch_engine(lambda: engine.commit_faults)
            start_http_server(metrics_port, addr=settings.host, registry=metrics.registry)
        feed = RecordFeed(engine, sinks)
        engine.add_listener(feed.listener)
        feed_task = asyncio.create_task(feed.run(), name="orchestrion-record-feed")
        try:
            err.print(f"orchestrator {engine.owner} running", highlight=False, markup=False)
            await stop.wait()
        finally:
            await engine.stop()
            feed_task.cancel()
            await asyncio.gather(feed_task, return_exceptions=True)

    _until_signal(log_format, settings, body)


def worker(
    handlers: Annotated[
        str | None,
        typer.Option("--handlers", help="Handlers to serve, comma-separated (default: all)."),
    ] = None,
    capabilities: Annotated[
        str | None,
        typer.Option("--capabilities", help="Capabilities this worker has (gpu,eu...)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, max=10_000, help="Attempts at once.")
    ] = 16,
    redis: RedisOption = None,
    log_format: LogFormatOption = "json",
) -> None:
    """Run node attempts from the task streams of the given handlers and capabilities."""
    early_signals.defer()
    from orchestrion.errors import HandlerNotFound
    from orchestrion.handlers.registry import default_registry
    from orchestrion.settings import load_secrets

    settings = _settings(None, redis)
    registry = default_registry()
    served = [h.strip() for h in (handlers or "").split(",") if h.strip()] or None
    try:
        for name in served or []:
            registry.get(name)
    except HandlerNotFound as exc:
        fail(EXIT_INVALID, str(exc))
    caps = [c.strip() for c in (capabilities or "").split(",") if c.strip()]
    governance = _cluster_governance(settings)

    async def body(stop: asyncio.Event) -> None:
        from orchestrion.cluster.circuits import CircuitBreakers
        from orchestrion.cluster.connection import connect_redis
        from orchestrion.cluster.worker import Worker

        breakers = CircuitBreakers(
            connect_redis(settings.redis_url),
            settings.redis_prefix,
            threshold=settings.circuit_failure_threshold,
            open_seconds=settings.circuit_open_seconds,
        )
        node_worker = await _start_when_reachable(
            lambda: Worker(
                settings.redis_url,
                settings,
                registry,
                handlers=served,
                capabilities=caps,
                concurrency=concurrency,
                secrets=load_secrets(settings),
                breakers=breakers,
                governance=governance,
            ),
            stop,
        )
        if node_worker is None:
            return
        from orchestrion.engine.gc_tuning import (
            lower_young_threshold,
            raise_young_threshold,
            resume_collection,
        )

        # Started: the start-up pause ends, and its attempts' objects are as short-lived as
        # an engine's (gc_tuning).
        resume_collection()
        raise_young_threshold(node_worker, settings.gc_young_threshold)
        try:
            await stop.wait()
        finally:
            await node_worker.stop()
            lower_young_threshold(node_worker)

    _until_signal(log_format, settings, body)


def reaper(
    redis: RedisOption = None,
    log_format: LogFormatOption = "json",
) -> None:
    """Reclaim task entries of dead or hung workers; park poison messages in the DLQ."""
    early_signals.defer()
    settings = _settings(None, redis)

    async def body(stop: asyncio.Event) -> None:
        from orchestrion.cluster.reaper import Reaper

        await Reaper(settings.redis_url, settings).run_until(stop)

    _until_signal(log_format, settings, body)


def migrate(db: DbOption = None) -> None:
    """Bring the database schema to the current migration (SQLite or PostgreSQL)."""
    from orchestrion.errors import ConfigurationError, StoreError
    from orchestrion.store.factory import open_store

    settings = _settings(db, None, need_redis=False)

    async def go() -> None:
        store = open_store(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
        await store.open()
        await store.close()

    try:
        asyncio.run(go())
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))
    except StoreError as exc:
        fail(EXIT_STORE, str(exc))
    from orchestrion.store.migrate import HEAD_REVISION

    err.print(f"database at migration {HEAD_REVISION}: {escape(_redacted(settings.database_url))}")


def _redacted(url: str) -> str:
    return redacted_url(url)
