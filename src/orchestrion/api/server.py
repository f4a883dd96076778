"""Run the API under uvicorn in this process (``orchestrion serve``), embedded workers included.

SIGTERM or SIGINT stops it cleanly: event streams end at once, uvicorn stops accepting and
finishes the requests under way, then the app's lifespan stops the engine with its grace
period (in-flight attempts finish or stay resumable). The process then exits with status 0
instead of re-raising the signal, as plain uvicorn would.

A worker thread that never returns (a python function that blocks, a computation that does
not end) cannot be interrupted, and Python waits for every such thread before it exits. So
once the app has shut down, the process exits after ``_EXIT_AFTER_SHUTDOWN`` seconds at the
latest, logging the threads it did not wait for.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from orchestrion.api.app import api_context, create_app
from orchestrion.api.browser_guard import HostAllowList
from orchestrion.api.context import ApiContext
from orchestrion.api.liveness import Heartbeat
from orchestrion.observability.logging_setup import configure_logging
from orchestrion.settings import Settings

__all__ = ["serve"]

logger = logging.getLogger(__name__)


_SWITCH_INTERVAL = 0.0005  # seconds
_EXIT_AFTER_SHUTDOWN = 5.0  # seconds the interpreter gets to finish once the app has stopped


class _StartupErrorLine(logging.Filter):
    """uvicorn logs the traceback of a failed start-up; when the engine could not start for
    a reason Orchestrion names (a database or queue that cannot be used), that reason is the
    one line logged instead, as every other command reports it."""

    def __init__(self, ctx: ApiContext) -> None:
        super().__init__()
        self._ctx = ctx

    def filter(self, record: logging.LogRecord) -> bool:
        error = self._ctx.startup_error
        if error is not None and str(record.msg).startswith("Traceback"):
            record.msg, record.args, record.exc_info = f"cannot start: {error}", (), None
        return True


class _Server(uvicorn.Server):
    """uvicorn's server, ending event streams on a signal and not re-raising it after."""

    def __init__(
        self,
        config: uvicorn.Config,
        ctx: ApiContext,
        stop_requested: Callable[[], bool],
        on_started: Callable[[], None] | None = None,
        heartbeat: Heartbeat | None = None,
    ) -> None:
        super().__init__(config)
        self._ctx = ctx
        self._stop_requested = stop_requested
        self._on_started = on_started
        self._heartbeat = heartbeat
        self._beating: asyncio.Task[None] | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # uvicorn's own handler records the signal to raise it again once stopped, which
        # kills the process by that signal; a graceful stop should exit 0.
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        loop.call_soon_threadsafe(self._ctx.begin_shutdown)

    async def shutdown(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().shutdown(sockets)  # type: ignore[arg-type]
        if self._beating is not None:
            self._beating.cancel()
        # Everything graceful is done (requests, grace period, engine, stores): only threads
        # that do not return could still hold the exit, for ever.
        threading.Thread(target=_exit_if_stuck, name="exit-watchdog", daemon=True).start()

    async def startup(self, sockets: list[object] | None = None) -> None:  # type: ignore[override]
        await super().startup(sockets)  # type: ignore[arg-type]
        for server in self.servers:
            for sock in server.sockets:
                host, port = sock.getsockname()[:2]
                logger.info("listening on http://%s:%d", host, port, extra={"port": port})
        if self.started and self._heartbeat is not None:
            # Beating before the parent hears it listens: it watches the beats from then on.
            self._heartbeat.beat()
            self._beating = asyncio.create_task(
                self._heartbeat.keep_beating(), name="orchestrion-heartbeat"
            )
        if self.started and self._on_started is not None:
            self._on_started()
        if self._stop_requested():  # a signal came before uvicorn had its handlers
            self.handle_exit(signal.SIGTERM, None)


def _exit_if_stuck() -> None:
    """Exit the process if it is still alive ``_EXIT_AFTER_SHUTDOWN`` seconds from now."""
    threading.Event().wait(_EXIT_AFTER_SHUTDOWN)
    busy = [
        thread.name
        for thread in threading.enumerate()
        if thread is not threading.current_thread() and not thread.daemon and thread.is_alive()
    ]
    logger.warning(
        "stopping without waiting for %d busy worker thread(s) after the shutdown grace period",
        len(busy),
        extra={"threads": busy[:20]},
    )
    logging.shutdown()  # flush the log handlers: os._exit skips it
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def serve(
    settings: Settings,
    *,
    log_format: str | None = None,
    stop_requested: Callable[[], bool] = lambda: False,
    extend: Callable[[FastAPI], None] | None = None,
    sockets: list[socket.socket] | None = None,
    on_started: Callable[[], None] | None = None,
    heartbeat: Heartbeat | None = None,
) -> bool:
    """Serve until stopped; False when the server could not start (port taken, bad store).
    ``stop_requested`` says whether a stop was asked for before the server had its signal
    handlers: it then stops as soon as it has started. ``extend`` adds to the app before it
    serves (the command line mounts the web dashboard with it). ``sockets``: listen on these
    (bound by the parent of several server processes, ``api/workers.py``) instead of binding
    ``settings.host`` and ``settings.port``; ``on_started`` is called once it listens, and
    ``heartbeat`` beats from then on, from the event loop (``api/liveness.py``).

    Raises ``ConfigurationError`` when the governance policy is invalid.
    """
    fmt = log_format or settings.log_format
    # The app's engine loads the governance policy (a ConfigurationError when it is invalid),
    # whose masker every log line then goes through.
    app = create_app(settings=settings)
    # A listening server answers only its own names: a rebound DNS name is not one of them.
    api_context(app).hosts = HostAllowList.of(settings.allowed_hosts, settings.host)
    if extend is not None:
        extend(app)
    masker = api_context(app).engine.governance.masker
    configure_logging("console" if fmt == "console" else "json", settings.log_level, masker=masker)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,  # configure_logging did it
        access_log=False,  # the API writes its own, with request ids
        lifespan="on",
        timeout_graceful_shutdown=max(1, round(settings.shutdown_grace)),
        server_header=False,
        # uvicorn would believe X-Forwarded-For from 127.0.0.1 by default and rewrite the
        # peer address with it; the API reads it itself, from ORCHESTRION_TRUSTED_PROXIES only.
        proxy_headers=False,
    )
    # CPU-heavy work (validating a large definition) runs in worker threads; the interpreter
    # hands the GIL between threads every 5 ms by default, and the event loop, which needs it
    # many times per request, then waits that long each time. A shorter interval keeps
    # /health and every other request answering while a worker thread computes.
    sys.setswitchinterval(_SWITCH_INTERVAL)
    server = _Server(config, api_context(app), stop_requested, on_started, heartbeat)
    line = _StartupErrorLine(api_context(app))
    logging.getLogger("uvicorn.error").addFilter(line)
    try:
        server.run(sockets=sockets)
    finally:
        logging.getLogger("uvicorn.error").removeFilter(line)
    return server.started
