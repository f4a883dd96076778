"""What the client returns about stored workflow definitions: their versions, with or
without the canonical spec."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrion.client.wire import timestamp

__all__ = ["Definition", "DefinitionSummary"]


@dataclass(frozen=True, slots=True)
class DefinitionSummary:
    """One stored definition version; ``nodes`` is its node count. ``status`` is
    ``available``, ``active`` or ``deprecated``; ``active`` (from a versions listing, else
    None) whether it is the version triggers, schedules and starts naming no version use."""

    id: str
    name: str
    version: str
    created_at: float | None = None
    nodes: int = 0
    dialect: str | None = None
    source_format: str | None = None
    status: str = "available"
    created_by: str | None = None
    status_changed_at: float | None = None
    status_changed_by: str | None = None
    active: bool | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DefinitionSummary:
        return cls(**_summary_fields(data))


@dataclass(frozen=True, slots=True)
class Definition(DefinitionSummary):
    """A stored definition version with its canonical ``spec``."""

    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def node_ids(self) -> list[str]:
        return [str(node["id"]) for node in (self.spec.get("dag") or {}).get("nodes") or []]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Definition:
        return cls(**_summary_fields(data), spec=dict(data.get("spec") or {}))


def _summary_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(data["id"]),
        "name": str(data["name"]),
        "version": str(data["version"]),
        "created_at": timestamp(data.get("created_at")),
        "nodes": int(data.get("nodes") or 0),
        "dialect": data.get("dialect"),
        "source_format": data.get("source_format"),
        "status": str(data.get("status") or "available"),
        "created_by": data.get("created_by"),
        "status_changed_at": timestamp(data.get("status_changed_at")),
        "status_changed_by": data.get("status_changed_by"),
        "active": data.get("active"),
    }
