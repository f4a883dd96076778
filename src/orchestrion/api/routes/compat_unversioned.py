"""The Kafka-queue engine description's routes: the /v1 workflow routes without ``/v1``.

``POST /workflow``, ``POST /workflow/trigger/{id}``, ``GET /workflows/{id}/results`` are the
/v1 routes themselves at these paths (``mirror``). ``GET /workflows/{id}`` is the /v1 status
with the description's one difference of shape: a node without an output yet shows ``{}``,
as its examples do, rather than ``null``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.convertors import Convertor, register_url_convertor

from orchestrion.api.models import ExecutionDetail
from orchestrion.api.problems import error_responses
from orchestrion.api.redaction import Disclosure, disclosure
from orchestrion.api.routes import VIEW, Ctx, workflows
from orchestrion.api.routes.mirror import mirror

__all__ = ["router"]

router = APIRouter(tags=["compatibility: unversioned"])


class _ExecutionId(Convertor[str]):
    """A path segment other than ``start``: ``/workflows/start`` is SwarmLite's start call
    (POST only), and must not also answer GET as an execution named "start"."""

    regex = "(?!start$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("execution_id", _ExecutionId())

Caller = Annotated[Disclosure, Depends(disclosure)]

mirror(router, workflows.router, "POST", "/v1/workflow", "/workflow")
mirror(router, workflows.router, "POST", "/v1/workflow/trigger/{execution_id}",
       "/workflow/trigger/{execution_id}")  # fmt: skip
mirror(router, workflows.router, "GET", "/v1/workflows/{execution_id}/results",
       "/workflows/{execution_id}/results")  # fmt: skip


@router.get(
    "/workflows/{execution_id:execution_id}",
    response_model=ExecutionDetail,
    dependencies=VIEW,
    responses=error_responses(404),
    summary="An execution's status and node states (unversioned; no output yet: {})",
)
async def get_workflow_unversioned(execution_id: str, ctx: Ctx, caller: Caller) -> Any:
    detail = await workflows.workflow_detail(ctx, caller, execution_id)
    if not isinstance(detail, ExecutionDetail):  # with outputs it is the model itself
        raise TypeError(f"unexpected execution detail {type(detail).__name__}")
    for node in detail.nodes.values():
        if node.output is None:
            node.output = {}
    return detail
