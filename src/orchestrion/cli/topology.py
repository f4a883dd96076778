"""``orchestrion up``: the whole scale-out topology on this machine, without Docker.

It runs ``orchestrion migrate`` and then, as child processes sharing its environment, the
orchestrators, the workers, one reaper and the API, and supervises them
(``cli/supervisor.py``): a child that dies is started again, so killing any of them is healed,
which makes ``up`` a bench for chaos tests. SIGTERM or Ctrl-C stops them all, in order.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.cli.processes import RedisOption, _redacted
from orchestrion.cli.supervisor import Child, Topology, child_main
from orchestrion.cli.terminal import fail

__all__ = ["Child", "Topology", "child_main", "plan", "up"]


def plan(
    orchestrators: int, workers: int, worker_concurrency: int, host: str, port: int, fmt: str
) -> list[Child]:
    """The children of a topology, in start order (the API last, once the rest is up)."""
    log = ["--log-format", fmt]
    children = [
        Child(f"orchestrator-{n}", ["orchestrator", *log], stage=1)
        for n in range(1, orchestrators + 1)
    ]
    children += [
        Child(f"worker-{n}", ["worker", "--concurrency", str(worker_concurrency), *log], stage=1)
        for n in range(1, workers + 1)
    ]
    children.append(Child("reaper", ["reaper", *log], stage=2))
    children.append(Child("api", ["serve", "--host", host, "--port", str(port), *log], stage=0))
    return children


def _local_url(host: str, port: int) -> str:
    """Where this machine reaches the API: a wildcard address becomes loopback."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _scaleout_settings(db: str | None, redis: str | None) -> Any:
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    overrides = {"database_url": db, "redis_url": redis}
    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except ConfigurationError as exc:
        fail(EXIT_INVALID, str(exc))
    database = settings.database_url
    scheme = database.partition("://")[0].lower().split("+", 1)[0]
    if "database_url" not in settings.model_fields_set:
        fail(
            EXIT_INVALID,
            "no database: set ORCHESTRION_DATABASE_URL or pass --db postgresql://user@host/db",
        )
    if scheme not in ("postgresql", "postgres"):
        fail(
            EXIT_INVALID,
            f"ORCHESTRION_DATABASE_URL (or --db) must be a postgresql:// URL, not "
            f"{_redacted(database)!r}: the processes of `up` share one database",
        )
    redis_url: str = settings.redis_url or ""
    if not redis_url:
        fail(
            EXIT_INVALID, "no Redis: set ORCHESTRION_REDIS_URL or pass --redis redis://host:6379/0"
        )
    if redis_url.partition("://")[0].lower() not in ("redis", "rediss", "unix"):
        fail(
            EXIT_INVALID,
            f"ORCHESTRION_REDIS_URL (or --redis) must be a redis:// URL, not "
            f"{_redacted(redis_url)!r}",
        )
    return settings


def up(
    orchestrators: Annotated[
        int, typer.Option("--orchestrators", min=1, max=64, help="Orchestrator processes.")
    ] = 2,
    workers: Annotated[
        int, typer.Option("--workers", min=1, max=256, help="Worker processes.")
    ] = 3,
    worker_concurrency: Annotated[
        int,
        typer.Option("--worker-concurrency", min=1, max=10_000, help="Attempts at once, each."),
    ] = 16,
    host: Annotated[
        str | None, typer.Option("--host", help="API address (default 127.0.0.1).")
    ] = None,
    port: Annotated[
        int | None, typer.Option("--port", min=1, max=65535, help="API port (default 8000).")
    ] = None,
    db: Annotated[
        str | None,
        typer.Option("--db", help="PostgreSQL URL (default: $ORCHESTRION_DATABASE_URL)."),
    ] = None,
    redis: RedisOption = None,
    log_dir: Annotated[
        Path | None,
        typer.Option(
            "--log-dir", file_okay=False, help="Write each child's output to DIR/<role>.log."
        ),
    ] = None,
    log_format: Annotated[
        str,
        typer.Option(
            "--log-format", case_sensitive=False, help="The children's logs: console or json."
        ),
    ] = "console",
    no_restart: Annotated[
        bool, typer.Option("--no-restart", help="Leave a child that dies down.")
    ] = False,
    shutdown_grace: Annotated[
        float | None,
        typer.Option(
            "--shutdown-grace",
            min=0,
            help="Seconds each stop stage (API; orchestrators and workers; reaper) may take "
            "before SIGKILL (default: $ORCHESTRION_SHUTDOWN_GRACE + 5).",
        ),
    ] = None,
    startup_timeout: Annotated[
        float,
        typer.Option("--startup-timeout", min=1, help="Seconds for the API to answer /health."),
    ] = 60.0,
) -> None:
    """Run a local scale-out topology (migrate, orchestrators, workers, reaper, API) and keep
    it alive: a child that dies is restarted. Until SIGTERM or Ctrl-C; no Docker needed.
    """
    if log_format.lower() not in ("json", "console"):
        fail(EXIT_INVALID, f"--log-format must be json or console, not {log_format!r}")
    settings = _scaleout_settings(db, redis)
    host = host or settings.host
    port = settings.port if port is None else port
    if port == 0:
        fail(EXIT_INVALID, "up needs a fixed API port (ORCHESTRION_PORT is 0): pass --port")
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    # The URLs go through the environment, not the command line, where `ps` shows passwords.
    env.update(
        ORCHESTRION_DATABASE_URL=settings.database_url,
        ORCHESTRION_REDIS_URL=settings.redis_url,
        ORCHESTRION_UP_PID=str(os.getpid()),
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("COLUMNS", "200")  # rich wraps at 80 columns on a pipe: keep messages whole
    topology = Topology(
        children=plan(orchestrators, workers, worker_concurrency, host, port, log_format.lower()),
        env=env,
        api_url=_local_url(host, port),
        # The children drain for the shutdown grace each; a margin spares them the SIGKILL.
        grace=settings.shutdown_grace + 5 if shutdown_grace is None else shutdown_grace,
        startup_timeout=startup_timeout,
        restart=not no_restart,
        log_dir=log_dir,
    )
    code = asyncio.run(topology.run())
    if code:
        raise typer.Exit(code)
