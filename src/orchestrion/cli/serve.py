"""``orchestrion serve``: the REST API, with the workflows run in this process (or handed to
the orchestrators in scale-out mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrion.cli.exits import EXIT_INVALID, EXIT_STORE
from orchestrion.cli.local import database_url
from orchestrion.cli.options import DbOption
from orchestrion.cli.terminal import fail

if TYPE_CHECKING:
    from orchestrion.settings import Settings

__all__ = ["serve"]


def serve(
    host: Annotated[
        str | None, typer.Option("--host", help="Address to listen on (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option("--port", min=0, max=65535, help="Port (default 8000; 0 picks one)."),
    ] = None,
    db: DbOption = None,
    log_format: Annotated[
        str | None,
        typer.Option("--log-format", help="json (default) or console.", case_sensitive=False),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=64,
            help="Server processes sharing the port, each running workflows on the same"
            " database (default 1; ORCHESTRION_API_WORKERS).",
        ),
    ] = None,
    worker_timeout: Annotated[
        float | None,
        typer.Option(
            "--worker-timeout",
            min=0,
            help="With --workers: seconds a server process may go without a heartbeat (stopped,"
            " or its event loop blocked) before it is killed and replaced; 0 never, else at least"
            " 2 (default 30;"
            " ORCHESTRION_API_WORKER_TIMEOUT).",
        ),
    ] = None,
    embedded_workers: Annotated[
        bool,
        typer.Option(
            "--embedded-workers",
            help="Run workflows in this process even when ORCHESTRION_REDIS_URL is set.",
        ),
    ] = False,
) -> None:
    """Serve the REST API and run workflows in this process, until SIGTERM or Ctrl-C.

    With ORCHESTRION_REDIS_URL set (scale-out), the API hands executions to the
    orchestrators instead; --embedded-workers runs them here all the same. --workers N
    starts N server processes on the port, supervised by this one.
    """
    from orchestrion.cli import early_signals

    early_signals.defer()
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    if log_format is not None and log_format.lower() not in ("json", "console"):
        fail(EXIT_INVALID, f"--log-format must be json or console, not {log_format!r}")
    overrides: dict[str, Any] = {}
    if host is not None:
        overrides["host"] = host
    if port is not None:
        overrides["port"] = port
    if db is not None:
        overrides["database_url"] = database_url(db, create=True)
    if workers is not None:
        overrides["api_workers"] = workers
    if worker_timeout is not None:
        overrides["api_worker_timeout"] = worker_timeout
    if embedded_workers:
        overrides["redis_url"] = None
    try:
        settings = load_settings(**overrides)
        if settings.api_workers > 1:  # one process imports nothing of the supervisor's
            from orchestrion.api.workers import check_workers

            check_workers(settings)
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))
    if settings.api_workers > 1:
        _serve_workers(settings, log_format)
        return
    from orchestrion.api.server import serve as run_server
    from orchestrion.web import mount

    try:
        started = run_server(
            settings,
            log_format=log_format.lower() if log_format else None,
            stop_requested=early_signals.requested,
            extend=mount if settings.dashboard else None,
        )
    except ConfigurationError as exc:  # the governance policy names its field and line
        fail(EXIT_INVALID, str(exc))
    if not started:
        raise typer.Exit(EXIT_STORE)


def _serve_workers(settings: Settings, log_format: str | None) -> None:
    """``settings.api_workers`` server processes on one port, supervised by this one."""
    from orchestrion.api.workers import serve_workers
    from orchestrion.cli import early_signals
    from orchestrion.cli.serve_child import child_main
    from orchestrion.observability.logging_setup import configure_logging

    fmt = (log_format or settings.log_format).lower()
    configure_logging("console" if fmt == "console" else "json", settings.log_level)
    code = serve_workers(
        settings, log_format=fmt, stop_requested=early_signals.requested, child=child_main
    )
    if code:
        raise typer.Exit(code)
