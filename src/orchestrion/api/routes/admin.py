"""Administration (admin role): the dead letters, in both modes.

Two kinds of dead letters are listed: nodes that failed for good (kind ``node``: their last
attempt failed and so did their execution; see ``orchestrion.engine.dead_nodes``), in every
deployment, and in scale-out mode also task messages parked in Redis (kind ``task``; see
``orchestrion.cluster.dlq``).

``GET /v1/admin/dlq`` pages through them, parked tasks first, then nodes by when they failed;
``GET .../{id}`` shows one; ``POST .../{id}/retry`` reruns a node's execution from that node,
or sends a parked task back to its task stream (the same attempt, deliveries counted from 1
again); ``DELETE .../{id}`` drops it: a node is recorded as handled and listed no more, a
parked task's attempt fails with category ``dead_letter`` so the execution goes on (retry
policy, failure handling, compensation).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from orchestrion.api.dead_letter_models import (
    DeadLetterAction,
    DeadLetterDetail,
    DeadLetterOut,
    DeadLetterPage,
)
from orchestrion.api.params import instant_query, parse_instant
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.routes import ADMIN, Ctx
from orchestrion.cluster.dlq import DeadLetter, DeadLetters
from orchestrion.cluster.dlq_actions import LetterAction, NotRetryable, drop_letter, retry_letter
from orchestrion.engine.dead_nodes import NODE_ENTRY, ExhaustedNode
from orchestrion.errors import DispatchError

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"])

_TIMEOUT = 5.0  # seconds an admin call waits for Redis
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a stream entry id: <milliseconds>-<sequence>
_NODE_CURSOR = re.compile(r"^node-(\d{1,9})$")  # how many nodes the previous pages listed
_AFTER = r"^(\d{1,20}-\d{1,20}|node-\d{1,9})$"


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses = error_responses(404, 409, *codes)
    responses[404] = {**responses[404], "description": "Unknown dead letter id"}
    responses[409] = {
        **responses[409],
        "description": "The dead letter is not a task message that can be retried, or its "
        "execution cannot be rerun now",
    }
    return responses


async def dead_letters(ctx: Ctx) -> DeadLetters | None:
    """Dependency: the Redis DLQ of this deployment; None in embedded mode."""
    if not ctx.settings.redis_url:
        return None
    if ctx.redis is None:  # the lifespan has not run (or has ended)
        raise ApiProblem(503, "the server is not connected to Redis (starting or stopping)")
    return ctx.redis.dead_letters


Dlq = Annotated[DeadLetters | None, Depends(dead_letters)]
EntryId = Annotated[
    str,
    Path(
        max_length=200,
        description="a dead letter id, as listed (`<execution id>.<node id>` for a node)",
        examples=["1712345678901-0"],
    ),
]


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[None]:
    """Redis failures and timeouts as a 503 problem (the cause goes to the log only)."""
    try:
        async with asyncio.timeout(_TIMEOUT):
            yield
    except TimeoutError:
        raise ApiProblem(
            503, f"Redis did not answer within {_TIMEOUT:g} s: the dead letter queue is unavailable"
        ) from None
    except DispatchError as exc:
        logger.warning("dead letter queue: Redis failed: %s", exc)
        raise ApiProblem(
            503, f"Redis is unavailable ({exc.kind}): the dead letter queue cannot be used"
        ) from None


def _task_dlq(dlq: DeadLetters | None, entry_id: str) -> DeadLetters:
    """The Redis DLQ for a parked task's id; 404 for an id that is not one."""
    # Redis refuses a malformed id with an error; for the API it is simply not one of ours.
    if dlq is None or not _ENTRY_ID.match(entry_id):
        raise ApiProblem(
            404,
            f"no dead letter '{entry_id}' (ids look like <execution id>.<node id>, or "
            "1712345678901-0 for a parked task)",
        )
    return dlq


def _node_fields(node: ExhaustedNode) -> dict[str, Any]:
    failed_at = datetime.fromtimestamp(node.failed_at, UTC)
    return {
        "id": node.id,
        "kind": "node",
        "category": node.category,
        "message": node.message,
        "traceback": None,
        "deliveries": 0,
        "first_sent_at": None,
        "parked_at": failed_at,
        "execution_id": node.execution_id,
        "node_id": node.node_id,
        "attempt": node.attempt,
        "handler": None,
        "stream": "",
        "consumer": None,
        "workflow": node.workflow or None,
    }


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC)


def _fields(letter: DeadLetter) -> dict[str, Any]:
    # A letter copies its ids from the parked message, which may be anything (a message no
    # worker could read): keep what has the right type, never fail to show a letter.
    execution_id, node_id, attempt = letter.ids()
    return {
        "id": letter.id,
        "category": letter.category,
        "message": letter.message,
        "traceback": letter.traceback,
        "deliveries": letter.deliveries,
        "first_sent_at": _time(letter.first_sent_at),
        "parked_at": _time(letter.parked_at) or datetime.fromtimestamp(0, UTC),
        "execution_id": execution_id,
        "node_id": node_id,
        "attempt": attempt,
        "handler": None if letter.handler is None else str(letter.handler),
        "stream": letter.stream,
        "consumer": None if letter.consumer is None else str(letter.consumer),
    }


@router.get(
    "/dlq",
    response_model=DeadLetterPage,
    dependencies=ADMIN,
    responses=_responses(),
    summary="List dead letters: parked tasks, then nodes that failed for good",
)
async def list_dead_letters(
    ctx: Ctx,
    dlq: Dlq,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        str | None,
        Query(pattern=_AFTER, description="the `next_after` of the previous page"),
    ] = None,
    workflow: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="only nodes of this workflow (by name); parked tasks are left out",
        ),
    ] = None,
    since: Annotated[
        str | None,
        instant_query("only nodes that failed at or after it; parked tasks are left out"),
    ] = None,
) -> DeadLetterPage:
    since_epoch = parse_instant(since, "since")  # a 422 before anything is read
    items: list[DeadLetterOut] = []
    total = 0
    node_cursor = _NODE_CURSOR.match(after) if after else None
    if dlq is not None and workflow is None and since is None:
        async with _redis():
            total = await dlq.count()
            if node_cursor is None:
                letters = await dlq.list(limit + 1, after)  # one more: is there a next page?
                items = [DeadLetterOut(**_fields(letter)) for letter in letters[:limit]]
                if len(letters) > limit:
                    return DeadLetterPage(items=items, next_after=items[-1].id, total=total)
    offset = int(node_cursor.group(1)) if node_cursor else 0
    nodes = await ctx.engine.reads.dead_nodes().list(workflow, since_epoch)
    end = offset + limit - len(items)
    items += [DeadLetterOut(**_node_fields(node)) for node in nodes[offset:end]]
    return DeadLetterPage(
        items=items,
        next_after=f"node-{end}" if len(nodes) > end else None,
        total=total + len(nodes),
    )


@router.get(
    "/dlq/{entry_id}",
    response_model=DeadLetterDetail,
    dependencies=ADMIN,
    responses=_responses(),
    summary="A dead letter (with its payload when it is a parked task)",
)
async def get_dead_letter(ctx: Ctx, entry_id: EntryId, dlq: Dlq) -> DeadLetterDetail:
    if NODE_ENTRY.match(entry_id):
        node = await ctx.engine.reads.dead_nodes().get(entry_id)  # ExecutionNotFound: 404
        return DeadLetterDetail(**_node_fields(node), payload="")
    tasks = _task_dlq(dlq, entry_id)
    async with _redis():
        letter = await tasks.get(entry_id)  # ExecutionNotFound: 404
    return DeadLetterDetail(**_fields(letter), payload=letter.payload)


@router.post(
    "/dlq/{entry_id}/retry",
    status_code=202,
    response_model=DeadLetterAction,
    dependencies=ADMIN,
    responses=_responses(400),
    summary="Retry a dead letter: rerun a node's execution from it, or resend a parked task",
)
async def retry_dead_letter(ctx: Ctx, entry_id: EntryId, dlq: Dlq) -> DeadLetterAction:
    if NODE_ENTRY.match(entry_id):
        node = await ctx.engine.reads.dead_nodes().get(entry_id)
        await ctx.engine.retry(node.execution_id, from_node=node.node_id)
        message = f"Execution {node.execution_id} re-run from node {node.node_id}"
        return DeadLetterAction(**asdict(LetterAction.of_node(entry_id, "retried", node, message)))
    tasks = _task_dlq(dlq, entry_id)
    async with _redis():
        try:
            action = await retry_letter(tasks, entry_id)
        except NotRetryable as exc:
            raise ApiProblem(409, str(exc), slug="not-retryable") from None
    return DeadLetterAction(**asdict(action))


@router.delete(
    "/dlq/{entry_id}",
    status_code=202,
    response_model=DeadLetterAction,
    dependencies=ADMIN,
    responses=_responses(400),
    summary="Drop a dead letter: a node is marked handled, a parked task's attempt fails",
)
async def drop_dead_letter(ctx: Ctx, entry_id: EntryId, dlq: Dlq) -> DeadLetterAction:
    if NODE_ENTRY.match(entry_id):
        node = await ctx.engine.reads.dead_nodes().drop(entry_id)
        message = (
            f"Dead letter dropped: node {node.node_id} of execution {node.execution_id}"
            " is recorded as handled"
        )
        return DeadLetterAction(**asdict(LetterAction.of_node(entry_id, "dropped", node, message)))
    tasks = _task_dlq(dlq, entry_id)
    async with _redis():
        action = await drop_letter(tasks, entry_id)
    return DeadLetterAction(**asdict(action))
