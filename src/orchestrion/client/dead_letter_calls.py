"""What the client sends about the dead letter queue (``/v1/admin/dlq``, admin): list, read,
retry, drop. Calls as data, like ``calls.py``."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrion.client.calls import Call, quote_segment, read_json
from orchestrion.client.models import DeadLetter, DeadLetterAction, DeadLetterPage

__all__ = ["dead_letter", "dead_letters", "drop_dead_letter", "retry_dead_letter"]


def dead_letters(
    limit: int | None,
    after: str | None,
    workflow: str | None = None,
    since: float | None = None,
) -> Call[DeadLetterPage]:
    since_text = None if since is None else datetime.fromtimestamp(since, UTC).isoformat()
    optional = {"limit": limit, "after": after, "workflow": workflow, "since": since_text}
    params = [(key, str(value)) for key, value in optional.items() if value is not None]
    return Call("GET", "/v1/admin/dlq", read_json(DeadLetterPage.from_api), params=params)


def dead_letter(entry_id: str) -> Call[DeadLetter]:
    return Call("GET", f"/v1/admin/dlq/{quote_segment(entry_id)}", read_json(DeadLetter.from_api))


def retry_dead_letter(entry_id: str) -> Call[DeadLetterAction]:
    path = f"/v1/admin/dlq/{quote_segment(entry_id)}/retry"
    return Call("POST", path, read_json(DeadLetterAction.from_api))


def drop_dead_letter(entry_id: str) -> Call[DeadLetterAction]:
    path = f"/v1/admin/dlq/{quote_segment(entry_id)}"
    return Call("DELETE", path, read_json(DeadLetterAction.from_api))
