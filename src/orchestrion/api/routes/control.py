"""Change a running execution: cancel (DELETE), retry, pause, resume, approve and reject."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Annotated

from fastapi import APIRouter, Body, Header, Query, Request

from orchestrion.api.auth import caller_of
from orchestrion.api.convert import execution_state
from orchestrion.api.models import ActionResponse, DecisionRequest, DecisionResponse
from orchestrion.api.problems import error_responses
from orchestrion.api.routes import OPERATE, Ctx
from orchestrion.api.settled import SETTLE_SECONDS, Check, finished, left, reached, state_after
from orchestrion.core.control import (
    COMPENSATING_CANCEL,
    COMPENSATING_PAUSE,
    cancel_request,
    pause_request,
)
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.engine.deciders import Decider
from orchestrion.errors import ControlPending, InvalidTransition
from orchestrion.store.base import ExecutionRecord

__all__ = ["router"]

router = APIRouter(prefix="/v1", tags=["workflows"])

_RESPONSES = error_responses(400, 404, 409)
_DECISION_RESPONSES = error_responses(400, 403, 404, 409)


async def _carried_out(verb: Awaitable[None]) -> bool:
    """Run a control verb: False when it is only recorded for the server process that drives
    the execution, which has not acted on it in time (busy, or stopped). That process
    still carries it out when it can, so the answer is the request's, not a refusal."""
    try:
        await verb
    except ControlPending:
        return False
    return True


async def _answer(
    ctx: Ctx, execution_id: str, message: str, check: Check, *, done: bool = True
) -> ActionResponse:
    """The state after the request; when the process driving the execution has not applied
    it yet (scale-out, a busy cluster; ``done`` False: one that has not acted on it in
    time), the state now, to poll from."""
    wait = SETTLE_SECONDS if done else 0.0
    settled = await state_after(ctx.engine, execution_id, check, wait=wait)
    if not settled.applied:
        message = f"{message} (requested; poll GET /v1/workflows/{execution_id} for its state)"
    return ActionResponse(
        execution_id=execution_id, status=execution_state(settled.record.status), message=message
    )


@router.delete(
    "/workflows/{execution_id}",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Cancel an execution (409 when it already ended)",
)
async def cancel_workflow(
    execution_id: str,
    ctx: Ctx,
    force: Annotated[
        bool,
        Query(
            description="Also abandon a compensation under way (a cancel without it is"
            " recorded, and the compensation runs to its end)"
        ),
    ] = False,
) -> ActionResponse:
    cancelled = ctx.engine.cancel(execution_id, reason="cancelled through the API", force=force)
    done = await _carried_out(cancelled)
    ended = reached()
    answer = await _answer(
        ctx,
        execution_id,
        "Workflow cancelled",
        # Forced, it ends the execution: an earlier cancel's record is no answer to it.
        lambda record: ended(record) or (not force and cancel_request(record.error) is not None),
        done=done,
    )
    if answer.status != "CANCELLED" and not force:
        record = await ctx.engine.reads.execution(execution_id)
        if cancel_request(record.error) is not None:
            answer.message = COMPENSATING_CANCEL
    return answer


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
    before = await ctx.engine.reads.execution(execution_id)
    await ctx.engine.retry(execution_id, from_node=from_node)
    message = f"Workflow re-run from {from_node}" if from_node else "Workflow retried"
    return await _answer(ctx, execution_id, message, finished(before))


@router.post(
    "/workflows/{execution_id}/pause",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Pause a running execution: running nodes finish, no new node starts (a"
    " compensation is not paused: the pause is recorded)",
)
async def pause_workflow(execution_id: str, ctx: Ctx) -> ActionResponse:
    record = await ctx.engine.reads.execution(execution_id)
    if record.status is ExecutionStatus.PAUSED:
        # The engine takes a second pause as a no-op; over HTTP it is a conflict, like resume.
        raise InvalidTransition(f"execution {execution_id} is already paused")
    done = await _carried_out(ctx.engine.pause(execution_id))
    paused = reached(ExecutionStatus.PAUSED)
    answer = await _answer(
        ctx,
        execution_id,
        "Workflow paused",
        # Compensating: recorded in the execution's error, and not paused.
        lambda record: paused(record) or pause_request(record.error) is not None,
        done=done,
    )
    if answer.status != "PAUSED":
        record = await ctx.engine.reads.execution(execution_id)
        if pause_request(record.error) is not None:
            answer.message = COMPENSATING_PAUSE
    return _ended_since(answer)


@router.post(
    "/workflows/{execution_id}/resume",
    status_code=202,
    response_model=ActionResponse,
    dependencies=OPERATE,
    responses=_RESPONSES,
    summary="Resume a paused execution",
)
async def resume_workflow(execution_id: str, ctx: Ctx) -> ActionResponse:
    done = await _carried_out(ctx.engine.resume(execution_id))
    resumed = left(ExecutionStatus.PAUSED)
    return _ended_since(await _answer(ctx, execution_id, "Workflow resumed", resumed, done=done))


_FINAL_STATES = {execution_state(status) for status in FINAL_EXECUTION_STATES}


def _ended_since(answer: ActionResponse) -> ActionResponse:
    """A pause or resume that was applied, and an end (a cancel, the last node) that came
    right after it: the answer says so, rather than only that it paused or resumed."""
    if answer.status in _FINAL_STATES:
        answer.message = f"{answer.message}; the execution has since ended ({answer.status})"
    return answer


async def _decide(
    request: Request,
    ctx: Ctx,
    execution_id: str,
    node_id: str,
    decision: DecisionRequest | None,
    client_id: str | None,
    *,
    approved: bool,
) -> DecisionResponse:
    body = decision or DecisionRequest()
    caller = caller_of(request.scope, ctx.settings)
    # The decider is who the request authenticated as, never the name its body states.
    decider = Decider(caller.key_id, caller.role, caller.name)
    done = await _carried_out(
        ctx.engine.decide(
            execution_id,
            node_id,
            approved=approved,
            by=body.by or client_id,
            comment=body.comment,
            decider=decider,
        )
    )

    async def decided(record: ExecutionRecord) -> bool:
        if record.status in FINAL_EXECUTION_STATES:
            return True
        runs = await ctx.engine.reads.node_runs(execution_id)
        return any(r.node_id == node_id and r.state is not NodeState.WAITING for r in runs)

    settled = await state_after(
        ctx.engine, execution_id, decided, wait=SETTLE_SECONDS if done else 0.0
    )
    message = f"Node {node_id} {'approved' if approved else 'rejected'}"
    if not settled.applied:  # handed over, not seen applied: it may still be refused
        message = (
            f"{'Approval' if approved else 'Rejection'} of node {node_id} sent, not confirmed"
            f" yet (requested; poll GET /v1/workflows/{execution_id} for its state)"
        )
    return DecisionResponse(
        execution_id=execution_id,
        node_id=node_id,
        approved=approved,
        status=execution_state(settled.record.status),
        message=message,
    )


@router.post(
    "/workflows/{execution_id}/nodes/{node_id}/approve",
    status_code=202,
    response_model=DecisionResponse,
    dependencies=OPERATE,
    responses=_DECISION_RESPONSES,
    summary="Approve a node waiting for approval (who and why are recorded)",
)
async def approve_node(
    execution_id: str,
    node_id: str,
    request: Request,
    ctx: Ctx,
    decision: Annotated[DecisionRequest | None, Body()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> DecisionResponse:
    return await _decide(request, ctx, execution_id, node_id, decision, x_client_id, approved=True)


@router.post(
    "/workflows/{execution_id}/nodes/{node_id}/reject",
    status_code=202,
    response_model=DecisionResponse,
    dependencies=OPERATE,
    responses=_DECISION_RESPONSES,
    summary="Reject a node waiting for approval (it fails unless on_reject: continue)",
)
async def reject_node(
    execution_id: str,
    node_id: str,
    request: Request,
    ctx: Ctx,
    decision: Annotated[DecisionRequest | None, Body()] = None,
    x_client_id: Annotated[str | None, Header()] = None,
) -> DecisionResponse:
    return await _decide(request, ctx, execution_id, node_id, decision, x_client_id, approved=False)
