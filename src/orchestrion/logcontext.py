"""Which execution and node the current code runs for, for log lines written anywhere inside.

The executor sets it around each handler call; asyncio tasks and worker threads copy context
variables, so a handler's own log lines (and its libraries') can carry the execution id, node
id, attempt and correlation id without passing them around. The server's log formatter reads
it; the library itself configures no logging.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

__all__ = ["current_node_fields", "current_request_id", "node_fields", "request_id_var"]

node_fields: ContextVar[dict[str, Any] | None] = ContextVar("orchestrion_node", default=None)


def current_node_fields() -> dict[str, Any]:
    """The fields of the node attempt being run in this context (empty outside one)."""
    return node_fields.get() or {}


request_id_var: ContextVar[str | None] = ContextVar("orchestrion_request_id", default=None)


def current_request_id() -> str | None:
    """The id of the API request being served in this task, if any."""
    return request_id_var.get()
