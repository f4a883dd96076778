"""Bodies of the dead letter queue's admin routes (``/v1/admin/dlq``): the failed nodes and
parked task messages that wait for an operator, and what a retry or a drop did."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["DeadLetterAction", "DeadLetterDetail", "DeadLetterOut", "DeadLetterPage"]


class _Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DeadLetterOut(_Out):
    """A dead letter, and the structured error of why: a node that failed for good (kind
    `node`), or a task message parked in scale-out mode (kind `task`).

    A node's execution failed with it; a parked task's attempt is neither failed nor running.
    Both wait for an operator to retry or drop them.
    """

    id: str = Field(
        description="`<execution id>.<node id>` (kind `node`), or the entry id in the DLQ "
        "stream (kind `task`)",
        examples=["1712345678901-0"],
    )
    kind: Literal["node", "task"] = Field(
        default="task",
        description="`node`: a node that failed after its last attempt (retries exhausted, or "
        "an error that is not retried); `task`: a task message parked by scale-out mode",
    )
    category: str = Field(
        description="kind `node`: the error category of its last attempt; kind `task`: "
        "`delivery` (delivered too often without an answer: its workers died or hung on it) "
        "or `schema` (a message no worker could read)",
        examples=["delivery"],
    )
    message: str
    traceback: str | None = None
    deliveries: int = Field(description="kind `task`: times it was delivered; `node`: 0")
    first_sent_at: datetime | None = None
    parked_at: datetime = Field(description="when it was parked, or when the node failed")
    workflow: str | None = Field(default=None, description="kind `node`: the workflow's name")
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    handler: str | None = None
    stream: str = Field(
        description="kind `task`: the task stream it came from (and a retry goes back to); "
        "empty for a node"
    )
    consumer: str | None = Field(default=None, description="the worker that parked it, if any")


class DeadLetterDetail(DeadLetterOut):
    """A dead letter with the task message exactly as it was sent (JSON text; empty for a
    node)."""

    payload: str


class DeadLetterPage(_Out):
    """Dead letters, oldest first; pass ``next_after`` as ``after`` for the next page."""

    items: list[DeadLetterOut]
    next_after: str | None = None
    total: int = Field(description="entries in the whole DLQ")


class DeadLetterAction(_Out):
    """What a retry or a drop did."""

    id: str
    action: Literal["retried", "dropped"]
    stream: str
    stream_entry_id: str | None = Field(
        default=None, description="retry: the id of the task entry added to `stream` again"
    )
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    message: str
