"""Change a running execution: cancel (DELETE), retry, pause, resume, approve and reject."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Header, Query

from orchestrion.api.convert import execution_state
from orchestrion.api.models import ActionResponse, DecisionRequest, DecisionResponse
from orchestrion.api.problems import error_responses
from orchestrion.api.routes import OPERATE, Ctx
from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import InvalidTransition

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["workflows"])

_RESPONSES = error_responses(400, 404, 409)


async def _answer(ctx: Ctx, execution_id: str, message: str) -> ActionResponse:
    record = await ctx.engine.store.get_execution(execution_id)
    return ActionResponse(
        execution_id=execution_id, status=execution_state(record.status), message=message
    )


@router.delete(
    "/workflows/{execution_id}",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Cancel an execution (409 when it already ended)",
)
async def cancel_workflow(execution_id: str, ctx: Ctx) -> ActionResponse:
    await ctx.engine.cancel(execution_id, reason="cancelled through the API")
    return await _answer(ctx, execution_id, "Workflow cancelled")


@router.post(
    "/workflows/{execution_id}/retry",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Run a failed or cancelled execution again from the nodes that did not complete",
)
async def retry_workflow(
    execution_id: str,
    ctx: Ctx,
    from_node: Annotated[
        str | None,
        Query(description="re-run this node and everything downstream of it (any final state)"),
    ] = None,
) -> ActionResponse:
    await ctx.engine.retry(execution_id, from_node=from_node)
    message = f"Workflow re-run from {from_node}" if from_node else "Workflow retried"
    return await _answer(ctx, execution_id, message)


@router.post(
    "/workflows/{execution_id}/pause",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Pause a running execution: running nodes finish, no new node starts",
)
async def pause_workflow(execution_id: str, ctx: Ctx) -> ActionResponse:
    record = await ctx.engine.store.get_execution(execution_id)
    if record.status is ExecutionStatus.PAUSED:
        # The engine takes a second pause as a no-op; over HTTP it is a conflict, like resume.
        raise InvalidTransition(f"execution {execution_id} is already paused")
    await ctx.engine.pause(execution_id)
    return await _answer(ctx, execution_id, "Workflow paused")


@router.post(
    "/workflows/{execution_id}/resume",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Resume a paused execution",
)
async def resume_workflow(execution_id: str, ctx: Ctx) -> ActionResponse:
    await ctx.engine.resume(execution_id)
    return await _answer(ctx, execution_id, "Workflow resumed")


async def _decide(
    ctx: Ctx,
    execution_id: str,
    node_id: str,
    decision: DecisionRequest | None,
    client_id: str | None,
    *,
    approved: bool,
) -> DecisionResponse:
    body = decision or DecisionRequest()
    await ctx.engine.decide(
        execution_id, node_id, approved=approved, by=body.by or client_id, comment=body.comment
    )
    record = await ctx.engine.store.get_execution(execution_id)
    return DecisionResponse(
        execution_id=execution_id,
        node_id=node_id,
        approved=approved,
        status=execution_state(record.status),
        message=f"Node {node_id} {'approved' if approved else 'rejected'}",
    )


@router.post(
    "/workflows/{execution_id}/nodes/{node_id}/approve",
    status_code=202,
    response_model=DecisionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Approve a node waiting for approval (who and why are recorded)",
)
async def approve_node(
    execution_id: str,
    node_id: str,
    ctx: Ctx,
    decision: Annotated[DecisionRequest | None, Body()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> DecisionResponse:
    return await _decide(ctx, execution_id, node_id, decision, x_client_id, approved=True)


@router.post(
    "/workflows/{execution_id}/nodes/{node_id}/reject",
    status_code=202,
    response_model=DecisionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Reject a node waiting for approval (it fails unless on_reject: continue)",
)
async def reject_node(
    execution_id: str,
    node_id: str,
    ctx: Ctx,
    decision: Annotated[DecisionRequest | None, Body()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> DecisionResponse:
    return await _decide(ctx, execution_id, node_id, decision, x_client_id, approved=False)
