"""The audit trail over HTTP (admin role): ``GET /v1/audit`` pages through records in ``seq``
order with filters; ``GET /v1/audit/verify`` checks the whole chain with the server's keys,
against the journal and the policy's anchor file, and names the first break; ``POST
/v1/admin/purge`` applies retention now.

Both reads are audited themselves (admin reads).
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field

from orchestrion.api.auth import caller_of
from orchestrion.api.params import DURATION_PATTERN, instant_query, invalid_field, parse_instant
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.routes import ADMIN, Ctx
from orchestrion.definition.durations import parse_duration
from orchestrion.store.audit import AuditFilter, AuditRecord

__all__ = ["router"]

router = APIRouter(tags=["audit"])

_MAX_SEQ = 2**63 - 1  # a 64-bit integer column


class AuditRecordOut(BaseModel):
    """One sealed audit record, exactly as signed (verifiable offline)."""

    seq: int
    at: float = Field(description="epoch seconds")
    action: str = Field(examples=["node.completed", "api.cancel_execution", "retention.purge"])
    actor: str | None = Field(description="engine:<owner>, key:<8 hex>, anonymous, cli:<user>")
    execution_id: str | None
    node_id: str | None
    outcome: str | None
    details: dict[str, Any] | None
    prev_hash: str
    key_id: str
    hash: str


class AuditPage(BaseModel):
    """A page of records; ask for the next one with ``after_seq=next_after_seq``."""

    enabled: bool = Field(description="whether new records are being written")
    records: list[AuditRecordOut]
    next_after_seq: int | None


class AuditBreakOut(BaseModel):
    """Where and how the chain breaks."""

    seq: int = Field(description="0 for a break of the anchor file itself")
    kind: str = Field(
        examples=[
            "edited",
            "deleted",
            "inserted",
            "reordered",
            "unknown_key",
            "truncated",
            "missing",
            "forked",
            "anchor",
        ]
    )
    message: str


class AuditVerification(BaseModel):
    """The outcome of checking the whole chain."""

    ok: bool
    verified_up_to: int = Field(description="seq of the last record known good")
    records: int
    head: dict[str, Any] | None = Field(description="the head kept aside: seq and hash")
    breaks: list[AuditBreakOut]
    anchor: dict[str, Any] | None = Field(
        default=None,
        description="the checkpoints of audit.anchor.file: file, exists, checkpoints (count),"
        " latest, problems; null when no anchor file is configured",
    )


class PurgeResult(BaseModel):
    """How many executions a purge deleted, and the cutoff it used."""

    purged: int
    finished_before: float


def _purge_responses() -> dict[int | str, dict[str, Any]]:
    responses = error_responses(400, 409)
    responses[409] = {
        **responses[409],
        "description": "No older_than given, and the governance policy sets no retention.days",
    }
    return responses


def _out(record: AuditRecord) -> AuditRecordOut:
    return AuditRecordOut(**record.chain_fields())


@router.get(
    "/v1/audit",
    response_model=AuditPage,
    dependencies=ADMIN,
    responses=error_responses(),
    summary="List audit records (admin)",
)
async def list_audit(
    ctx: Ctx,
    execution_id: Annotated[str | None, Query(max_length=255)] = None,
    actor: Annotated[str | None, Query(max_length=255)] = None,
    action: Annotated[
        str | None, Query(max_length=128, description="an action prefix, e.g. 'api.' or 'node.'")
    ] = None,
    since: Annotated[str | None, instant_query("records at or after")] = None,
    until: Annotated[str | None, instant_query("records before")] = None,
    after_seq: Annotated[int, Query(ge=0, le=_MAX_SEQ)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditPage:
    flt = AuditFilter(
        execution_id=execution_id,
        actor=actor,
        action_prefix=action,
        since=parse_instant(since, "since"),
        until=parse_instant(until, "until"),
        after_seq=after_seq,
        limit=limit,
    )
    records = await ctx.engine.audit.list(flt)
    following = records[-1].seq if len(records) == limit else None
    return AuditPage(
        enabled=ctx.engine.audit.enabled,
        records=[_out(r) for r in records],
        next_after_seq=following,
    )


@router.get(
    "/v1/audit/verify",
    response_model=AuditVerification,
    dependencies=ADMIN,
    responses=error_responses(409),
    summary="Verify the audit chain (admin)",
)
async def verify_audit(ctx: Ctx) -> AuditVerification:
    audit = ctx.engine.audit
    if not audit.enabled:
        raise ApiProblem(409, f"the audit trail is off: {audit.status().reason}", slug="audit-off")
    result, head = await audit.verify_with_head()
    return AuditVerification(
        ok=result.ok,
        verified_up_to=result.verified_up_to,
        records=result.records,
        head=None if head is None else {"seq": head.seq, "hash": head.hash},
        breaks=[AuditBreakOut(seq=b.seq, kind=b.kind, message=b.message) for b in result.breaks],
        anchor=result.anchor,
    )


@router.post(
    "/v1/admin/purge",
    response_model=PurgeResult,
    dependencies=ADMIN,
    responses=_purge_responses(),
    summary="Delete finished executions older than a duration (admin)",
)
async def purge(
    ctx: Ctx,
    request: Request,
    older_than: Annotated[
        str | None,
        Query(
            pattern=DURATION_PATTERN,
            max_length=256,
            description="e.g. 30d, 12h, P30D; default: retention.days of the governance policy",
        ),
    ] = None,
) -> PurgeResult:
    seconds = _retention_seconds(ctx, older_than)
    # A duration longer than the epoch is old purges nothing: the cutoff stops at 1970.
    cutoff = max(0.0, time.time() - seconds)
    # The matched key's id, never one derived from whatever token an open API was sent.
    actor = caller_of(request.scope, ctx.settings).key_id or "anonymous"
    count = await ctx.engine.audit.purge(cutoff, actor=actor)
    return PurgeResult(purged=count, finished_before=cutoff)


def _retention_seconds(ctx: Ctx, older_than: str | None) -> float:
    if older_than is not None:
        try:
            return parse_duration(older_than)
        except ValueError as exc:  # the pattern admits only what parses; kept as a guard
            raise invalid_field("older_than", str(exc)) from None
    days = ctx.engine.governance.policy.retention.days
    if days is None:
        raise ApiProblem(
            409,
            "give older_than (e.g. 30d): the governance policy sets no retention.days",
            slug="no-retention",
        )
    return float(days) * 86400
