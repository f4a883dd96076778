"""Which execution and node the current code runs for, for log lines written anywhere inside.

The executor sets it around each handler call; asyncio tasks and worker threads copy context
variables, so a handler's own log lines (and its libraries') can carry the execution id, node
id, attempt and correlation id without passing them around. The server's log formatter reads
it; the library itself configures no logging.

``reaches_a_handler`` tells whether a line would be written at all, so that per-request and
per-transition lines are not built (record, masking, fields) only to be dropped.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

__all__ = [
    "current_node_fields",
    "current_request_id",
    "node_fields",
    "reaches_a_handler",
    "request_id_var",
]

node_fields: ContextVar[dict[str, Any] | None] = ContextVar("orchestrion_node", default=None)


def current_node_fields() -> dict[str, Any]:
    """The fields of the node attempt being run in this context (empty outside one)."""
    return node_fields.get() or {}


request_id_var: ContextVar[str | None] = ContextVar("orchestrion_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the API request being served in this task, if any."""
    return request_id_var.get()


def reaches_a_handler(logger: logging.Logger, level: int) -> bool:
    """Whether a line of ``level`` from ``logger`` would reach a handler that writes it.

    ``isEnabledFor`` alone is not enough: a process that prints WARNING and above keeps its
    root logger at INFO so that node attempts' INFO lines are captured into their logs, and
    a line made outside an attempt would then be built only for every handler to drop it.
    A handler's filters are not consulted: a handler whose level admits the line counts.
    """
    if not logger.isEnabledFor(level):
        return False
    current: logging.Logger | None = logger
    while current is not None:
        for handler in current.handlers:
            if level >= handler.level:
                return True
        if not current.propagate:
            return False
        current = current.parent
    last = logging.lastResort  # what logging uses when no handler is configured at all
    return last is not None and level >= last.level
