"""What the client returns from ``GET /health``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Health"]


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health``: ``ok`` unless a check failed (the server answered 503)."""

    status: str
    checks: dict[str, Any] = field(default_factory=dict)
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Health:
        return cls(
            status=str(data.get("status") or "unknown"),
            checks=dict(data.get("checks") or {}),
            version=data.get("version"),
        )
