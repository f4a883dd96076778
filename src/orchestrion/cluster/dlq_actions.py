"""Retrying and dropping a parked task, with the answer the API and ``orchestrion dlq`` give.

Both surfaces act on the dead letter queue through these two functions and show the same
``LetterAction``: the API as ``DeadLetterAction``, the CLI through the client's model of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from orchestrion.cluster.dlq import DeadLetters
from orchestrion.errors import NotRetryable

__all__ = ["LetterAction", "NotRetryable", "drop_letter", "retry_letter"]


@dataclass(frozen=True, slots=True)
class LetterAction:
    """What a retry or a drop did; the field names of ``DeadLetterAction`` in the API and the
    client, so either is made from ``asdict`` of it."""

    id: str
    action: str  # "retried" | "dropped"
    stream: str
    stream_entry_id: str | None
    execution_id: str | None
    node_id: str | None
    attempt: int | None
    message: str

    @classmethod
    def of_node(cls, entry_id: str, action: str, node: _NodeLetter, message: str) -> LetterAction:
        """The answer for a node that exhausted its retries (no stream: it is in the store)."""
        return cls(
            entry_id, action, "", None, node.execution_id, node.node_id, node.attempt, message
        )


class _NodeLetter(Protocol):
    execution_id: str
    node_id: str
    attempt: int


async def retry_letter(dlq: DeadLetters, entry_id: str) -> LetterAction:
    """Send the parked task back to its stream (``ExecutionNotFound`` for an unknown id,
    ``NotRetryable`` for a letter that is not a task message, ``DispatchError``)."""
    letter = await dlq.get(entry_id)
    try:
        added = await dlq.retry(entry_id)
    except ValueError as exc:
        raise NotRetryable(f"{exc}: it cannot be retried, drop it instead") from None
    execution_id, node_id, attempt = letter.ids()
    return LetterAction(
        id=entry_id,
        action="retried",
        stream=letter.stream,
        stream_entry_id=added,
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        message=f"Dead letter sent back to {letter.stream} as {added}",
    )


async def drop_letter(dlq: DeadLetters, entry_id: str) -> LetterAction:
    """Drop the parked task: its attempt fails with category ``dead_letter`` when the letter
    names one and it is still open (``ExecutionNotFound`` for an unknown id,
    ``DispatchError``)."""
    letter, failed = await dlq.drop(entry_id)
    execution_id, node_id, attempt = letter.ids()
    if execution_id and node_id and attempt and not failed:
        message = (
            f"Dead letter dropped: attempt {attempt} of node {node_id} had already ended"
            " (a copy of the task ran to its end), so nothing changed"
        )
    elif execution_id and node_id and attempt:
        message = (
            f"Dead letter dropped: attempt {attempt} of node {node_id} "
            "fails with category dead_letter"
        )
    else:
        message = "Dead letter dropped (it named no node attempt to fail)"
    return LetterAction(
        id=entry_id,
        action="dropped",
        stream=letter.stream,
        stream_entry_id=None,
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        message=message,
    )
