"""Administration (admin role): the dead letter queue of scale-out mode.

``GET /v1/admin/dlq`` pages through parked task messages, oldest first; ``GET .../{id}`` shows
one with its payload; ``POST .../{id}/retry`` sends it back to its task stream (the same
attempt, deliveries counted from 1 again); ``DELETE .../{id}`` drops it, and its attempt fails
with category ``dead_letter`` so the execution goes on (retry policy, failure handling,
compensation). The operations are those of ``orchestrion.resilience.dlq.DeadLetters``.

Embedded mode has no queue (nothing is ever parked): every route answers 409 saying how to
turn scale-out on, rather than an empty list that would suggest there is one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query

from orchestrion.api.models import (
    DeadLetterAction,
    DeadLetterDetail,
    DeadLetterOut,
    DeadLetterPage,
)
from orchestrion.api.problems import ApiProblem, error_responses
from orchestrion.api.routes import ADMIN, Ctx
from orchestrion.dispatch.streams import StreamNames
from orchestrion.resilience.dlq import DeadLetter, DeadLetters

__all__ = ["router"]

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/admin", tags=["admin"])

EMBEDDED_DETAIL = (
    "no dead letter queue in embedded mode: set ORCHESTRION_REDIS_URL (scale-out mode) "
    "to use /v1/admin/dlq"
)
_TIMEOUT = 5.0  # seconds an admin call waits for Redis
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")  # a stream entry id: <milliseconds>-<sequence>


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    responses = error_responses(404, 409, *codes)
    responses[404] = {**responses[404], "description": "Unknown dead letter id"}
    responses[409] = {
        **responses[409],
        "description": "Embedded mode has no dead letter queue (set ORCHESTRION_REDIS_URL), "
        "or the dead letter is not a task message that can be retried",
    }
    return responses


async def dead_letters(ctx: Ctx) -> DeadLetters:
    """Dependency: the DLQ of this deployment; 409 in embedded mode."""
    if not ctx.settings.redis_url:
        raise ApiProblem(409, EMBEDDED_DETAIL, slug="embedded-mode", title="Embedded mode")
    if ctx.redis is None:  # the lifespan has not run (or has ended)
        raise ApiProblem(503, "the server is not connected to Redis (starting or stopping)")
    return DeadLetters(ctx.redis, StreamNames(ctx.settings.redis_prefix))


Dlq = Annotated[DeadLetters, Depends(dead_letters)]
EntryId = Annotated[
    str,
    Path(
        max_length=64,
        description="a dead letter id, as listed",
        examples=["1712345678901-0"],
    ),
]


@contextlib.asynccontextmanager
async def _redis() -> AsyncIterator[None]:
    """Redis failures and timeouts as a 503 problem (the cause goes to the log only)."""
    from redis.exceptions import RedisError

    try:
        async with asyncio.timeout(_TIMEOUT):
            yield
    except TimeoutError:
        raise ApiProblem(
            503, f"Redis did not answer within {_TIMEOUT:g} s: the dead letter queue is unavailable"
        ) from None
    except (RedisError, OSError) as exc:
        logger.warning("dead letter queue: Redis failed: %s", exc)
        raise ApiProblem(
            503,
            f"Redis is unavailable ({type(exc).__name__}): the dead letter queue cannot be used",
        ) from None


def _known(entry_id: str) -> str:
    # Redis refuses a malformed id with an error; for the API it is simply not one of ours.
    if not _ENTRY_ID.match(entry_id):
        raise ApiProblem(404, f"no dead letter '{entry_id}' (ids look like 1712345678901-0)")
    return entry_id


def _time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return datetime.fromtimestamp(value, UTC)


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _fields(letter: DeadLetter) -> dict[str, Any]:
    # A letter copies its ids from the parked message, which may be anything (a message no
    # worker could read): keep what has the right type, never fail to show a letter.
    attempt = letter.attempt
    return {
        "id": letter.id,
        "category": letter.category,
        "message": letter.message,
        "traceback": letter.traceback,
        "deliveries": letter.deliveries,
        "first_sent_at": _time(letter.first_sent_at),
        "parked_at": _time(letter.parked_at) or datetime.fromtimestamp(0, UTC),
        "execution_id": _text(letter.execution_id),
        "node_id": _text(letter.node_id),
        "attempt": attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else None,
        "handler": _text(letter.handler),
        "stream": letter.stream,
        "consumer": _text(letter.consumer),
    }


@router.get(
    "/dlq",
    response_model=DeadLetterPage,
    dependencies=ADMIN,
    responses=_responses(),
    summary="List dead letters, oldest first (scale-out mode)",
)
async def list_dead_letters(
    dlq: Dlq,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    after: Annotated[
        str | None,
        Query(
            pattern=_ENTRY_ID.pattern,
            description="the `next_after` of the previous page (a dead letter id)",
        ),
    ] = None,
) -> DeadLetterPage:
    async with _redis():
        letters = await dlq.list(limit + 1, after)  # one more: is there a next page?
        total = await dlq.count()
    page = letters[:limit]
    return DeadLetterPage(
        items=[DeadLetterOut(**_fields(letter)) for letter in page],
        next_after=page[-1].id if len(letters) > limit else None,
        total=total,
    )


@router.get(
    "/dlq/{entry_id}",
    response_model=DeadLetterDetail,
    dependencies=ADMIN,
    responses=_responses(),
    summary="A dead letter with its payload",
)
async def get_dead_letter(entry_id: EntryId, dlq: Dlq) -> DeadLetterDetail:
    async with _redis():
        letter = await dlq.get(_known(entry_id))  # ExecutionNotFound: 404
    return DeadLetterDetail(**_fields(letter), payload=letter.payload)


@router.post(
    "/dlq/{entry_id}/retry",
    status_code=202,
    response_model=DeadLetterAction,
    dependencies=ADMIN,
    responses=_responses(400),
    summary="Send a dead letter back to its task stream (the same attempt)",
)
async def retry_dead_letter(entry_id: EntryId, dlq: Dlq) -> DeadLetterAction:
    async with _redis():
        letter = await dlq.get(_known(entry_id))
        try:
            added = await dlq.retry(entry_id)
        except ValueError as exc:
            raise ApiProblem(
                409, f"{exc}: it cannot be retried, drop it instead", slug="not-retryable"
            ) from None
    fields = _fields(letter)
    return DeadLetterAction(
        id=entry_id,
        action="retried",
        stream=letter.stream,
        stream_entry_id=added,
        execution_id=fields["execution_id"],
        node_id=fields["node_id"],
        attempt=fields["attempt"],
        message=f"Dead letter sent back to {letter.stream} as {added}",
    )


@router.delete(
    "/dlq/{entry_id}",
    status_code=202,
    response_model=DeadLetterAction,
    dependencies=ADMIN,
    responses=_responses(400),
    summary="Drop a dead letter: its attempt fails with category dead_letter",
)
async def drop_dead_letter(entry_id: EntryId, dlq: Dlq) -> DeadLetterAction:
    async with _redis():
        letter = await dlq.drop(_known(entry_id))
    fields = _fields(letter)
    if fields["execution_id"] and fields["node_id"] and fields["attempt"]:
        message = (
            f"Dead letter dropped: attempt {fields['attempt']} of node {fields['node_id']} "
            "fails with category dead_letter"
        )
    else:
        message = "Dead letter dropped (it named no node attempt to fail)"
    return DeadLetterAction(
        id=entry_id,
        action="dropped",
        stream=letter.stream,
        execution_id=fields["execution_id"],
        node_id=fields["node_id"],
        attempt=fields["attempt"],
        message=message,
    )
