"""What becomes of an approve or reject that comes too late, and how one is handed over.

Of two decisions for one wait, the first the machine applies wins; the other finds the node
no longer waiting and changes nothing. Such a decision is refused (409, naming the decision
that won) and journalled as ``execution.decision_refused``, a record that changes nothing of
the execution: the journal keeps every decision made, the one that counted and the others.

In scale-out mode a process that drives nothing (the API) first holds the node's wait for its
decision (``ClusterDispatcher.hold_decision``): a second decision for the same wait, from any
API process, is refused at once while the first is under way, also when the first could not
be confirmed (its orchestrator died), so it is never replaced by a later one. Then it forwards
the decision and waits up to ``ANSWER_SECONDS`` for the orchestrator's answer.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import Event, Record, WaitResolved
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import NodeState
from orchestrion.engine.ids import new_event_id
from orchestrion.errors import (
    ControlPending,
    ErrorCategory,
    ExecutionNotFound,
    InvalidTransition,
    StoreError,
)
from orchestrion.store.base import CommitBatch

if TYPE_CHECKING:
    from orchestrion.dispatch.base import ClusterDispatcher
    from orchestrion.engine.facade import Engine

__all__ = [
    "ANSWER_SECONDS",
    "decided_note",
    "forward_decision",
    "journal_refused",
    "not_waiting",
    "refuse",
]

ANSWER_SECONDS = 5.0  # how long a request handed to the orchestrators waits for their word

logger = logging.getLogger(__name__)


def decision_of(event: WaitResolved) -> dict[str, Any]:
    """The decision an approve or reject carries (a review's is under ``review``)."""
    output = event.output
    if isinstance(output, dict):
        review = output.get("review")
        return review if isinstance(review, dict) else output
    return {}


def _verb(decision: dict[str, Any]) -> str:
    return "approve" if decision.get("approved") else "reject"


async def decided_note(engine: Engine, execution_id: str, node_id: str) -> str:
    """What became of a node that no longer waits: the decision that won, else its state."""
    try:
        runs = await engine.store.get_node_runs(execution_id)
    except (StoreError, ExecutionNotFound):
        return ""
    run = {r.node_id: r for r in runs}.get(node_id)
    if run is None:
        return "(it is pending)"
    if run.state is NodeState.FAILED and (run.error or {}).get("category") == (
        ErrorCategory.REJECTED.value
    ):
        return f"it was already {run.error.get('message', 'rejected') if run.error else ''}"
    output = run.output if isinstance(run.output, dict) else {}
    review = output.get("review")
    decision: dict[str, Any] = review if isinstance(review, dict) else output
    if run.state is NodeState.COMPLETED and "approved" in decision and "decided_at" in decision:
        how = "approved" if decision.get("approved") else "rejected"
        who = decision.get("decided_by")
        return f"it was already {how}{f' by {who}' if who else ''}"
    return f"(it is {run.state.value})"


def not_waiting(execution_id: str, node_id: str, note: str) -> str:
    """The 409 of a decision for a node that does not (or no longer) wait for one."""
    joint = " " if note.startswith("(") or not note else ": "
    return (
        f"node '{node_id}' of execution {execution_id} is not waiting for a decision{joint}{note}"
    ).rstrip()


async def journal_refused(
    engine: Engine, execution_id: str, event: WaitResolved, reason: str | None = None
) -> None:
    """Journal a refused decision (``execution.decision_refused``, ``reason`` by default what
    became of its node): of no owner, since the record changes nothing of the execution,
    which may have ended meanwhile."""
    decision = decision_of(event)
    if reason is None:
        note = await decided_note(engine, execution_id, event.node)
        reason = not_waiting(execution_id, event.node, note)
    data = {
        "node": event.node,
        "attempt": event.attempt,
        "verb": _verb(decision),
        **{k: decision.get(k) for k in ("decided_by", "decided_by_key", "decided_by_role")},
        "comment": decision.get("comment"),
        "decided_at": decision.get("decided_at", event.at),
        "reason": reason,
    }
    record = Record(RecordType.EXECUTION_DECISION_REFUSED, time.time(), data=data)
    batch = CommitBatch(audit=engine.audit.signer, outbox=engine.outbox)
    batch.add(execution_id, record, new_event_id(), None)
    try:
        await engine.store.commit(batch)
    except StoreError as exc:  # the store is away, or the execution was purged
        logger.warning("refused decision on %s/%s not journalled: %s", execution_id, event, exc)


async def refuse(engine: Engine, execution_id: str, event: WaitResolved) -> InvalidTransition:
    """Journal a decision refused here; the 409 to raise for it."""
    await journal_refused(engine, execution_id, event)
    note = await decided_note(engine, execution_id, event.node)
    return InvalidTransition(not_waiting(execution_id, event.node, note))


async def forward_decision(
    engine: Engine,
    cluster: ClusterDispatcher,
    forward: Callable[[str, Event], Awaitable[None]],
    execution_id: str,
    event: WaitResolved,
) -> None:
    """Hand a decision to the orchestrators (see the module docstring): 409 when another
    decision holds the wait or got there first, ``ControlPending`` when no answer came."""
    key = cluster.reply_key()
    decision = decision_of(event)
    holder = {"reply": key, "verb": _verb(decision), "by": decision.get("decided_by")}
    hold = (execution_id, event.node, event.attempt)
    other = await cluster.hold_decision(*hold, holder)
    if other is not None:
        who = f" by {other['by']}" if other.get("by") else ""
        said = (
            f"node '{event.node}' of execution {execution_id} already has a decision under"
            f" way ({other.get('verb', 'a decision')}{who}, not confirmed yet): poll GET"
            f" /v1/workflows/{execution_id} for its state"
        )
        await journal_refused(engine, execution_id, event, said)
        raise InvalidTransition(said)
    try:
        await forward(execution_id, dataclasses.replace(event, reply=key))
    except BaseException:
        await cluster.release_decision(*hold, key)
        raise
    try:
        applied = await cluster.wait_reply(key, ANSWER_SECONDS)
    except Exception:  # the queue went away after taking the request: it is handed over
        applied = None
    if applied is None:
        raise ControlPending(
            f"the decision on node '{event.node}' of execution {execution_id} was sent and is"
            " not confirmed yet"
        )
    if not applied:
        note = await decided_note(engine, execution_id, event.node)
        raise InvalidTransition(not_waiting(execution_id, event.node, note))
