"""One server process of ``orchestrion serve --workers N`` (``api/workers.py`` starts them).

Spawned, it sets itself up as the ``orchestrion`` command does (a process Orchestrion owns,
its logging, masking), then runs the one-process server on the socket the parent bound. It
stops gracefully on SIGTERM or SIGINT, and also once its parent is gone.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING

# Nothing of Orchestrion's at import time: the process imports this module before the
# function can defer signals, and a stop in that window should find little to interrupt.
if TYPE_CHECKING:
    from orchestrion.api.workers import ChildLink
    from orchestrion.settings import Settings

__all__ = ["child_main"]

logger = logging.getLogger(__name__)

_PARENT_CHECK = 0.5  # seconds between checks that the parent is alive


def child_main(settings: Settings, log_format: str, sock: socket.socket, link: ChildLink) -> None:
    """A server process: the one-process server on the parent's socket."""
    from orchestrion.cli import early_signals

    early_signals.defer()  # a stop while this process starts is graceful too
    from orchestrion.cli.exits import EXIT_INVALID, EXIT_STORE
    from orchestrion.errors import ConfigurationError
    from orchestrion.governance.log_masking import mask_uncaught_exceptions
    from orchestrion.observability.logging_setup import capture_node_info
    from orchestrion.settings import claim_process

    claim_process()  # as the orchestrion command does: this process is Orchestrion's
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    capture_node_info(settings.log_level)
    mask_uncaught_exceptions()
    _stop_when_orphaned()
    _reserve_metrics_files(EXIT_STORE)

    from orchestrion.api.server import serve
    from orchestrion.web import mount

    try:
        started = serve(
            settings,
            log_format=log_format,
            stop_requested=early_signals.requested,
            extend=mount if settings.dashboard else None,
            sockets=[sock],
            on_started=link.ready.set,
            heartbeat=link.heartbeat,
        )
    except ConfigurationError as exc:
        logger.error("cannot start: %s", exc)
        raise SystemExit(EXIT_INVALID) from None
    if not started:
        raise SystemExit(EXIT_STORE)


def _reserve_metrics_files(exit_code: int) -> None:
    """Exit before listening when the shared metrics have no room (a full temporary folder),
    rather than being killed by SIGBUS at the first value written."""
    from orchestrion.observability.shared_metrics import SHARED_METRICS_DIR, reserve_files

    path = os.environ.get(SHARED_METRICS_DIR)
    if not path:
        return
    try:
        reserve_files(path)
    except OSError as exc:
        logger.error("cannot start: no room for the shared metrics in %s: %s", path, exc)
        raise SystemExit(exit_code) from None


def _stop_when_orphaned() -> None:
    """Stop this server gracefully (SIGTERM to itself) once its parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_CHECK)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orchestrion-parent-watch", daemon=True).start()
