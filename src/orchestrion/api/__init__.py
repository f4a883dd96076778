"""The REST API (v1): FastAPI routes over one embedded engine, served by ``orchestrion serve``.

``create_app`` builds the application; docs/API.md is its specification.
"""

from __future__ import annotations

from orchestrion.api.app import create_app

__all__ = ["create_app"]
