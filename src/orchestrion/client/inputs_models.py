"""What the client returns of a node's rendered inputs: one per attempt that started."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from orchestrion.client.wire import timestamp

__all__ = ["RenderedInputs"]


@dataclass(frozen=True, slots=True)
class RenderedInputs:
    """One attempt's config as rendered (``started_at`` in epoch seconds); values read from
    secrets stay as declared; ``{"masked": ...}`` when the caller may not see the node's
    data, ``{"omitted": ...}`` when it was too large to keep, None for an empty config."""

    attempt: int
    started_at: float
    inputs: Any

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> RenderedInputs:
        return cls(
            attempt=int(data.get("attempt") or 0),
            started_at=timestamp(data.get("started_at")) or 0.0,
            inputs=data.get("inputs"),
        )

    @classmethod
    def page(cls, data: dict[str, Any]) -> list[RenderedInputs]:
        return [cls.from_api(item) for item in data.get("items") or []]
