"""The production-grade orchestrator description's routes, under ``/api/v1``.

Each is a /v1 route at that description's path (``mirror``): one execution is
``/api/v1/workflow/{id}`` (singular) there, read with GET and cancelled with DELETE, and the
dead letter queue is ``/api/v1/admin/dlq``.
"""

from __future__ import annotations

from fastapi import APIRouter

from orchestrion.api.routes import admin, control, workflows
from orchestrion.api.routes.mirror import mirror

__all__ = ["router"]

router = APIRouter(tags=["compatibility: /api/v1"])

_ONE = "/workflows/{execution_id}"
_MIRRORED = [
    (workflows.router, "POST", "/v1/workflow", "/api/v1/workflow"),
    (workflows.router, "POST", "/v1/workflow/trigger/{execution_id}",
     "/api/v1/workflow/trigger/{execution_id}"),
    (workflows.router, "GET", f"/v1{_ONE}", "/api/v1/workflow/{execution_id}"),
    (workflows.router, "GET", f"/v1{_ONE}/results", "/api/v1/workflow/{execution_id}/results"),
    (control.router, "DELETE", f"/v1{_ONE}", "/api/v1/workflow/{execution_id}"),
    (admin.router, "GET", "/v1/admin/dlq", "/api/v1/admin/dlq"),
    (admin.router, "POST", "/v1/admin/dlq/{entry_id}/retry", "/api/v1/admin/dlq/{entry_id}/retry"),
    (admin.router, "DELETE", "/v1/admin/dlq/{entry_id}", "/api/v1/admin/dlq/{entry_id}"),
]  # fmt: skip
for source, method, v1_path, path in _MIRRORED:
    mirror(router, source, method, v1_path, path)
