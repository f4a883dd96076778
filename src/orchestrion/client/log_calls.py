"""What the client sends about node log lines (``/v1/workflows/{id}/logs`` and
``/v1/workflows/{id}/nodes/{node}/logs``): a page, or the live stream. Calls as data, like
``calls.py``."""

from __future__ import annotations

from orchestrion.client.calls import Call, quote_segment, read_json
from orchestrion.client.log_models import LogPage

__all__ = ["log_stream", "node_logs"]


def _log_target(execution_id: str, node_id: str | None) -> tuple[str, list[tuple[str, str]]]:
    base = f"/v1/workflows/{quote_segment(execution_id)}"
    if node_id is None:
        return f"{base}/logs", []
    return f"{base}/nodes/{quote_segment(node_id)}/logs", []


def _log_params(attempt: int | None) -> list[tuple[str, str]]:
    return [] if attempt is None else [("attempt", str(attempt))]


def node_logs(
    execution_id: str, node_id: str | None, attempt: int | None, after: int, limit: int | None
) -> Call[LogPage]:
    """A page of the log lines of an execution's nodes (or of one node, one attempt)."""
    path, params = _log_target(execution_id, node_id)
    params += [*_log_params(attempt), ("after", str(after))]
    if limit is not None:
        params.append(("limit", str(limit)))
    return Call("GET", path, read_json(LogPage.from_api), params=params)


def log_stream(
    execution_id: str, node_id: str | None, attempt: int | None, after: int
) -> tuple[str, list[tuple[str, str]]]:
    """The path and query of a node log stream (resumed by ``Last-Event-ID``)."""
    path, params = _log_target(execution_id, node_id)
    return f"{path}/stream", [*params, *_log_params(attempt), ("after", str(after))]
