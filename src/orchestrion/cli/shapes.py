"""The CLI's ``--json`` output in the API's shape: UPPERCASE states, ISO 8601 UTC times.

An execution prints as ``ExecutionResult.to_dict()`` (the API's execution plus ``result``);
a row of ``orchestrion list`` as a row of ``GET /v1/workflows`` (``execution_id``, ``status``).
"""

from __future__ import annotations

from typing import Any

from orchestrion.core.result import iso_utc

__all__ = ["list_row"]


def list_row(row: dict[str, Any]) -> dict[str, Any]:
    """A row ``render_list`` draws, as the API lists it."""
    status = row.get("status")
    return {
        "execution_id": row.get("execution_id", row.get("id")),
        "workflow": row.get("workflow"),
        "version": row.get("version"),
        "status": getattr(status, "value", status).upper() if status is not None else None,
        **{
            key: value if value is None or isinstance(value, str) else iso_utc(float(value))
            for key in ("created_at", "started_at", "finished_at")
            for value in (row.get(key),)
        },
    }
