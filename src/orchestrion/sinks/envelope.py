"""``OutboundEvent``: what every sink publishes for one journal record.

The shape is the event model of the agent-platform design, so its consumers read ours
unchanged: ``{id, type, workflow_id, timestamp, source, data, correlation_id, causation_id,
metadata}``. ``id`` is the journal event's id (stable: consumers deduplicate on it, since
delivery is at least once); ``workflow_id`` the execution's id; ``correlation_id`` the id
shared by everything one request, schedule tick or event started (an event's own id for the
executions it started); ``causation_id`` the id of the event that caused this one (the
``node.queued`` that dispatched a node attempt, say). ``metadata`` says which workflow,
version, node and attempt, and the schema version of this shape.

Values sealed at rest (classified executions) are never opened for a sink: each becomes the
string ``"[sealed]"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrion.governance.encryption import is_encrypted

__all__ = ["SCHEMA_VERSION", "SEALED", "OutboundEvent", "unsealed_view"]

SCHEMA_VERSION = 1
SEALED = "[sealed]"
SOURCE = "orchestrion"


@dataclass(frozen=True, slots=True)
class OutboundEvent:
    """One event as sinks publish it; ``body`` is its JSON text (the same bytes everywhere)."""

    id: str
    type: str
    execution_id: str
    payload: dict[str, Any]
    body: bytes

    @classmethod
    def build(
        cls,
        *,
        event_id: str,
        event_type: str,
        execution_id: str,
        at: float,
        data: Any,
        correlation_id: str | None,
        causation_id: str | None,
        workflow: str | None = None,
        version: str | None = None,
        node_id: str | None = None,
        attempt: int = 0,
    ) -> OutboundEvent:
        payload = {
            "id": event_id,
            "type": event_type,
            "workflow_id": execution_id,
            "timestamp": datetime.fromtimestamp(at, UTC).isoformat(),
            "source": SOURCE,
            "data": unsealed_view(data) if data is not None else {},
            "correlation_id": correlation_id,
            "causation_id": causation_id,
            "metadata": {
                "schema_version": SCHEMA_VERSION,
                "execution_id": execution_id,
                "workflow": workflow,
                "version": version,
                "node_id": node_id,
                "attempt": attempt,
            },
        }
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        return cls(event_id, event_type, execution_id, payload, body)

    @classmethod
    def from_payload(cls, payload: dict[str, Any]) -> OutboundEvent:
        """An event kept as JSON (a delivery retried later) as it was first published."""
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
        metadata = payload.get("metadata") or {}
        return cls(
            str(payload.get("id")),
            str(payload.get("type")),
            str(metadata.get("execution_id") or payload.get("workflow_id")),
            payload,
            body,
        )


def unsealed_view(value: Any) -> Any:
    """``value`` with every sealed envelope replaced by ``SEALED``."""
    if is_encrypted(value):
        return SEALED
    if isinstance(value, dict):
        return {key: unsealed_view(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unsealed_view(item) for item in value]
    return value
