"""Several server processes on one port (``orchestrion serve --workers N``), supervised.

The parent binds the listening socket once and starts N server processes (spawned, not
forked: each imports and builds its own app, engine and store connection) that all accept on
it; the kernel hands each new connection to one of them. Each child is the one-process server
of ``api/server.py`` with its own engine on the same database. Engines on one database share it
safely (leases, the owner check under the write lock, control requests through the journal),
so an execution submitted through one process is read, controlled and followed through any.

The parent serves no request; it supervises:

- SIGTERM or SIGINT: each child is sent SIGTERM (the graceful stop of one server: requests
  finish, the engine drains for its grace period), the parent waits for them, kills any still
  running ``_STOP_MARGIN`` seconds after the grace period, and exits 0.
- A child that exits before it listens (a database that cannot be opened, an invalid
  governance policy) stops the whole service with that child's exit status: a replacement
  would fail the same way.
- A child that dies once it served (killed, out of memory) is logged as an error and replaced
  at once; the executions it drove are taken over by a sibling at its next heartbeat (their
  owner is a dead process of this host). More than ``_MAX_DEATHS`` deaths within
  ``_DEATH_WINDOW`` seconds stop the service with an error instead of restarting for ever.
- A child that listens but stops answering (stopped by SIGSTOP, its event loop blocked by
  synchronous code) is found by its heartbeat (``api/liveness.py``): one silent for longer than
  ``Settings.api_worker_timeout`` is killed with SIGKILL, logged as an error and replaced as a
  death is.
- Metrics: the parent makes a directory for prometheus_client's multiprocess mode and hands
  it to every child (``PROMETHEUS_MULTIPROC_DIR``), so that ``/metrics``, whichever child
  answers, reports the totals of the service (``observability/shared_metrics.py``); it drops
  the gauges of a child that is gone (``mark_process_dead``) and the directory at the end
  (or, killed, at the next start: ``api/metrics_dir.py``).
- A child whose parent is gone (the parent was killed) stops itself, gracefully
  (``cli/serve_child.py``, the command line's server process).

uvicorn's own ``workers`` supervisor binds and shares the socket the same way, but runs a plain
uvicorn server in each child from a pickled config (not this server, its app built from the
settings and its graceful stop), kills a child that does not answer a ping within a few
seconds (one busy in a long computation) and exits 0 when a child cannot start.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event as ProcessEvent
from types import FrameType

from prometheus_client.multiprocess import mark_process_dead

from orchestrion.api.liveness import BEAT_SECONDS, Heartbeat
from orchestrion.api.metrics_dir import metrics_dir
from orchestrion.errors import ConfigurationError
from orchestrion.observability.shared_metrics import SHARED_METRICS_DIR
from orchestrion.settings import Settings

__all__ = ["ChildLink", "ChildMain", "check_workers", "serve_workers"]

logger = logging.getLogger(__name__)

_EXIT_STORE = 3  # the command line's exit code (cli/exits.py)
_STOP_MARGIN = 10.0  # seconds past the grace period before a stopping child is killed
_MAX_DEATHS = 5
_DEATH_WINDOW = 60.0  # seconds
_MIN_WORKER_TIMEOUT = 2 * BEAT_SECONDS  # a beat missed, and the parent's look between two
_FROZEN = 2 * BEAT_SECONDS  # the parent looks every beat: a longer gap means it was stopped


@dataclass(frozen=True)
class ChildLink:
    """What ties a server process to its parent: its number (0 to N-1; a replacement takes
    the number of the process it replaces), the event it sets once it listens, and the
    heartbeat it keeps from then on."""

    index: int
    ready: ProcessEvent
    heartbeat: Heartbeat


ChildMain = Callable[[Settings, str, socket.socket, ChildLink], None]
"""A server process: ``(settings, log format, the listening socket, its link to the parent)``."""


def check_workers(settings: Settings) -> None:
    """A ``ConfigurationError`` when ``settings.api_workers`` > 1 cannot work."""
    if settings.api_workers <= 1:
        return
    if settings.database_url.lower().startswith("memory://"):
        raise ConfigurationError(
            f"--workers {settings.api_workers} (ORCHESTRION_API_WORKERS) needs a database every"
            " server process opens: memory:// lives inside one process; use a SQLite file"
            " (sqlite:///path.db) or PostgreSQL"
        )
    timeout = settings.api_worker_timeout
    if 0 < timeout < _MIN_WORKER_TIMEOUT:
        # A process beats once a second and the parent looks once a second: a shorter wait
        # would kill healthy processes whenever the two fall out of step.
        raise ConfigurationError(
            f"--worker-timeout {timeout:g} (ORCHESTRION_API_WORKER_TIMEOUT) must be 0 (never)"
            f" or at least {_MIN_WORKER_TIMEOUT:g} seconds: each server process beats once"
            " a second"
        )


@dataclass
class _Child:
    """One server process and what the parent knows of it."""

    process: SpawnProcess
    link: ChildLink

    @property
    def index(self) -> int:
        return self.link.index

    @property
    def ready(self) -> ProcessEvent:
        return self.link.ready

    def hung(self, timeout: float, watched: float) -> bool:
        """Listening, alive, and silent for longer than ``timeout`` seconds (0: never) of
        the last ``watched`` seconds, those its parent ran for."""
        return (
            timeout > 0
            and self.ready.is_set()
            and self.process.is_alive()
            and min(self.link.heartbeat.silent_for(), watched) > timeout
        )


class _Supervisor:
    """The parent: starts the server processes, replaces those that die, stops them all."""

    def __init__(
        self, settings: Settings, log_format: str, sock: socket.socket, child: ChildMain
    ) -> None:
        self._settings = settings
        self._log_format = log_format
        self._sock = sock
        self._child = child
        self._context = multiprocessing.get_context("spawn")
        self._children: list[_Child] = []
        self._deaths: list[float] = []
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()  # a signal wakes the wait for children

    def _signalled(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop.is_set():
            logger.info("stopping %d server processes", len(self._children))
        self._stop.set()
        with contextlib.suppress(OSError):  # a signal after the stop closed the pipe
            os.write(self._wake_w, b"x")

    def _spawn(self, index: int) -> _Child:
        link = ChildLink(index, self._context.Event(), Heartbeat(self._context))
        process = self._context.Process(
            target=self._child,
            args=(self._settings, self._log_format, self._sock, link),
            name=f"orchestrion-server-{index}",
        )
        process.start()
        logger.info("server process %d started", index, extra={"pid": process.pid, "worker": index})
        return _Child(process, link)

    def run(self, stop_requested: Callable[[], bool]) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._signalled)
        if stop_requested():  # a signal came before these handlers
            return 0
        self._children = [self._spawn(i) for i in range(self._settings.api_workers)]
        code = self._watch()
        self._stop_all()
        return code

    def _watch(self) -> int:
        """Replace the children that die until a stop; the exit status of the service."""
        timeout = self._settings.api_worker_timeout
        looked = watching = time.monotonic()
        while not self._stop.is_set():
            sentinels = [child.process.sentinel for child in self._children]
            # Woken by a death or a signal, and every beat's time to look at the heartbeats.
            multiprocessing.connection.wait(
                [*sentinels, self._wake_r], BEAT_SECONDS if timeout > 0 else None
            )
            now = time.monotonic()
            if now - looked > _FROZEN:
                # This process did not run meanwhile: most likely the whole service was
                # stopped (Ctrl-Z, a paused container) and its children could not beat either.
                # Their silence counts from now on, or all would be killed as they resume.
                watching = now
            looked = now
            for i, child in enumerate(self._children):
                if self._stop.is_set():
                    break
                hung = child.hung(timeout, now - watching)
                if hung:
                    # SIGKILL: a stopped process does not act on SIGTERM, and a blocked loop
                    # would not run its graceful stop.
                    child.process.kill()
                elif child.process.is_alive():
                    continue
                child.process.join()
                _forget(child)
                code = _describe(child.process.exitcode)
                if hung:
                    code = f"no heartbeat for more than {timeout:g} s: {code}"
                if not child.ready.is_set():
                    logger.error(
                        "server process %d exited before it listened (%s): stopping the service",
                        child.index,
                        code,
                        extra={"pid": child.process.pid, "worker": child.index},
                    )
                    status = child.process.exitcode
                    return status if status is not None and status > 0 else _EXIT_STORE
                now = time.monotonic()
                self._deaths = [t for t in self._deaths if now - t < _DEATH_WINDOW] + [now]
                if len(self._deaths) > _MAX_DEATHS:
                    logger.error(
                        "server processes died %d times within %d s (last: %s):"
                        " stopping the service",
                        len(self._deaths),
                        _DEATH_WINDOW,
                        code,
                    )
                    return _EXIT_STORE
                logger.error(
                    "server process %d died (%s): starting another",
                    child.index,
                    code,
                    extra={"pid": child.process.pid, "worker": child.index},
                )
                self._children[i] = self._spawn(child.index)
        return 0

    def _stop_all(self) -> None:
        for child in self._children:
            if child.process.is_alive() and child.process.pid is not None:
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._settings.shutdown_grace + _STOP_MARGIN
        for child in self._children:
            child.process.join(max(0.0, deadline - time.monotonic()))
            if child.process.is_alive():
                logger.error(
                    "server process %d did not stop in time: killing it",
                    child.index,
                    extra={"pid": child.process.pid, "worker": child.index},
                )
                child.process.kill()
                child.process.join()
        os.close(self._wake_r)
        os.close(self._wake_w)


def _forget(child: _Child) -> None:
    """Drop the gauges of a child that is gone from the service's metrics (its counters
    stay: what it did was done)."""
    path = os.environ.get(SHARED_METRICS_DIR)
    if path and child.process.pid is not None:
        mark_process_dead(child.process.pid, path)  # type: ignore[no-untyped-call]


def _describe(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        return f"killed by {signal.Signals(-exitcode).name}"
    return f"exit status {exitcode}"


def _bind(settings: Settings) -> socket.socket:
    """The listening socket every child accepts on (OSError when it cannot be bound)."""
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    # IPPROTO_TCP spelled out, as uvicorn binds: asyncio sets TCP_NODELAY only on
    # connections of a socket whose proto says TCP, and without it every answer waits
    # for the client's delayed ACK (40 ms).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((settings.host, settings.port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def serve_workers(
    settings: Settings, *, log_format: str, stop_requested: Callable[[], bool], child: ChildMain
) -> int:
    """Serve with ``settings.api_workers`` processes until stopped: the exit status. Each
    process runs ``child`` (a module-level function: it is imported again in the process)."""
    try:
        sock = _bind(settings)
    except OSError as exc:
        logger.error("cannot listen on %s:%d: %s", settings.host, settings.port, exc)
        return _EXIT_STORE
    stack = contextlib.ExitStack()
    try:
        # Made before the first child, as prometheus_client reads it when a process imports it.
        shared = stack.enter_context(metrics_dir())
    except OSError as exc:  # the temporary folder is full or read-only
        sock.close()
        logger.error("cannot make the directory of the shared metrics: %s", exc)
        return _EXIT_STORE
    before = os.environ.get(SHARED_METRICS_DIR)
    os.environ[SHARED_METRICS_DIR] = shared
    try:
        host, port = sock.getsockname()[:2]
        logger.info(
            "listening on http://%s:%d with %d server processes",
            host,
            port,
            settings.api_workers,
            extra={"port": port, "workers": settings.api_workers},
        )
        return _Supervisor(settings, log_format, sock, child).run(stop_requested)
    finally:
        sock.close()
        if before is None:
            os.environ.pop(SHARED_METRICS_DIR, None)
        else:
            os.environ[SHARED_METRICS_DIR] = before
        stack.close()
