"""The REST API (v1): FastAPI routes over one embedded engine, served by ``orchestrion serve``.

Internal: the HTTP API that docs/API.md specifies is the contract, not these modules; from
Python, talk to a service with ``orchestrion.client``. ``create_app`` builds the application.
"""

from __future__ import annotations

from orchestrion.api.app import create_app

__all__ = ["create_app"]
