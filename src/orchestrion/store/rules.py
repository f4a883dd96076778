"""The rules every store adapter applies the same way, kept here so adapters agree by construction.

- How a machine ``Record`` lands: a node record becomes a journal row whose data is the
  record's own data plus a small snapshot (state, error, wait), never the output, which lives
  only in the node run; an execution record moves the execution's status, phase, timings and
  error as ``execution_error`` and ``finished_at`` say.
- Execution list cursors: opaque base64 of ``created_at|id`` of the last row of a page.
- Automatic definition versions: the largest integer version plus one.
- A definition version's life: ``available`` when submitted, ``active`` when chosen (at most
  one per name: activating one makes the previous one available again), ``deprecated`` when
  retired. The active version of a name is the one marked active, else the newest available
  one; a deprecated version is never the active one.
- Batch shape: parallel lists of one length, no event id twice (``check_batch``).
- Node log lines: made to fit their columns, never refused (``log_rows``).
- Ownership at commit: a batch from an owner is refused whole when one of its executions
  is not held by that owner now: another process took it over, or it is held by nobody (it
  ended under its new owner, or was given back), which its old owner's machine cannot know.
  A batch of no owner is not checked.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any, Final, cast

from orchestrion.core.events import Record
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.errors import ErrorCategory, ExecutionError, InvalidTransition, StoreError
from orchestrion.governance.trust import Trust
from orchestrion.store.base import CommitBatch, ExecutionRecord
from orchestrion.store.pending_trigger import PendingTrigger

__all__ = [
    "ACTIVE",
    "AVAILABLE",
    "DEFINITION_STATUSES",
    "DEPRECATED",
    "EVENT_KEY",
    "JOURNAL_ONLY",
    "KEEP",
    "OUTPUT_STATES",
    "SCHEDULE_KEY",
    "TRIGGERS",
    "UNFINISHED_STATUSES",
    "active_heads",
    "apply_execution_record",
    "check_owners",
    "check_records",
    "check_status_change",
    "decode_cursor",
    "encode_cursor",
    "execution_error",
    "finished_at",
    "log_rows",
    "next_version",
    "no_active_version",
    "node_event_data",
    "plain_node_record",
    "trigger_of",
    "trigger_pending",
]

KEEP: Final[Any] = object()
"""Returned when a record leaves a field as it is."""

UNFINISHED_STATUSES = (ExecutionStatus.RUNNING, ExecutionStatus.WAITING, ExecutionStatus.PAUSED)
"""Statuses ``unfinished_executions`` returns (with triggered pending ones already owned)."""

OUTPUT_STATES = (NodeState.COMPLETED, NodeState.COMPENSATED)
"""Node states whose output ``get_outputs`` returns."""

STARTED = "execution.started"
RETRIED = "execution.retried"
FAILED = "execution.failed"
CANCELLED = "execution.cancelled"
CANCEL_REQUESTED = "execution.cancel_requested"
PAUSE_REQUESTED = "execution.pause_requested"
COMPLETED = "execution.completed"
NOTICE_DELIVERED = "execution.notice_delivered"
DECISION_REFUSED = "execution.decision_refused"

JOURNAL_ONLY: Final = frozenset({NOTICE_DELIVERED, DECISION_REFUSED})
"""Execution records that add a fact to the journal and change nothing of the execution's row
(status, phase, times, owner): a notice its sinks took, a decision refused. So one may be
written by any process, while the execution runs or after it ended, with no status."""
CONTROL_REQUESTED = "control.requested"
"""A journal event that changes nothing: a request to the execution's owner."""


def plain_node_record(record: Record) -> bool:
    """True when the journal data of a node record is just its state (the common, fast case)."""
    return (
        record.data is None
        and record.error is None
        and record.wait_reason is None
        and record.wake_at is None
        and not record.extra
    )


def node_event_data(record: Record) -> dict[str, Any]:
    """The journal data of a node record: what changed, without the output."""
    state = record.state
    data: dict[str, Any] = {"state": None if state is None else state.value}
    if record.error is not None:
        data["error"] = record.error
    if record.wait_reason is not None:
        data["wait_reason"] = record.wait_reason
    if record.wake_at is not None:
        data["wake_at"] = record.wake_at
    compensation = record.extra.get("compensation")
    if compensation is not None:
        data["compensation"] = compensation
    if record.data:
        data.update(record.data)
    return data


def execution_error(record: Record) -> Any:
    """The execution's error after an execution record, or ``KEEP``."""
    kind = record.type
    if kind in (FAILED, CANCEL_REQUESTED, PAUSE_REQUESTED):
        return (record.data or {}).get("error")
    if kind == CANCELLED:
        data = record.data or {}
        error = {"category": ErrorCategory.CANCELLED, "message": data.get("reason") or "cancelled"}
        if "abandoned" in data:  # a forced cancel: the nodes whose compensation did not run
            error["abandoned"] = data["abandoned"]
        return error
    if kind in (RETRIED, COMPLETED):
        return None
    return KEEP


def finished_at(record: Record) -> Any:
    """The execution's ``finished_at`` after an execution record, or ``KEEP``."""
    if record.status in FINAL_EXECUTION_STATES:
        return record.at
    if record.type == RETRIED:
        return None
    return KEEP


TRIGGERS = ("api", "schedule", "event", "workflow")
"""What starts an execution: a client, a schedule's firing, an emitted event, a parent
execution's ``workflow`` node. Read from the execution's idempotency key and parent, which
each starter sets its own way (``schedule:``, ``event:`` keys; a parent id)."""

SCHEDULE_KEY = "schedule:"
EVENT_KEY = "event:"


def trigger_of(execution: ExecutionRecord) -> str:
    """Which of ``TRIGGERS`` started ``execution``."""
    if execution.parent_execution_id is not None:
        return "workflow"
    key = execution.idempotency_key or ""
    if key.startswith(SCHEDULE_KEY):
        return "schedule"
    if key.startswith(EVENT_KEY):
        return "event"
    return "api"


def encode_cursor(created_at: float, execution_id: str) -> str:
    """The cursor of the page that starts after this execution (newest-first order)."""
    # repr() round-trips a float exactly, so the boundary row is never repeated or skipped.
    raw = f"{created_at!r}|{execution_id}".encode()
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode_cursor(cursor: str) -> tuple[float, str]:
    """``(created_at, id)`` from ``encode_cursor``; raises ``ExecutionError`` if malformed."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created_at, execution_id = raw.split("|", 1)
        return float(created_at), execution_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ExecutionError(f"invalid cursor '{cursor}'") from None


AVAILABLE: Final = "available"
ACTIVE: Final = "active"
DEPRECATED: Final = "deprecated"
DEFINITION_STATUSES = (AVAILABLE, ACTIVE, DEPRECATED)


def active_heads(versions: Iterable[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """``(name, id)`` of each name's active version, by name, from ``(name, id, status)`` of
    its versions oldest first: the one marked active, else the newest available one."""
    newest: dict[str, str] = {}
    marked: dict[str, str] = {}
    for name, definition_id, status in versions:
        if status == ACTIVE:
            marked[name] = definition_id
        elif status == AVAILABLE:
            newest[name] = definition_id
    heads = {**newest, **marked}
    return [(name, heads[name]) for name in sorted(heads)]


def check_status_change(name: str, version: str, current: str, status: str) -> None:
    """Raise ``InvalidTransition`` when ``status`` would bring a deprecated version back:
    deprecating retires a version for good (what was retired, say for a flaw, must not
    return by a click); its text may be submitted again as a new version."""
    if current == DEPRECATED and status != DEPRECATED:
        raise InvalidTransition(
            f"definition '{name}' version '{version}' is deprecated, and a deprecated version "
            "is never made active again: submit it again under a new version"
        )


def no_active_version(name: str) -> str:
    """Why a start that names no version of ``name`` has none to use."""
    return (
        f"definition '{name}' has no active version (every version is deprecated): "
        "name a version, or activate one"
    )


def next_version(versions: Iterable[str]) -> str:
    """One more than the largest integer version; versions like "2.1" or "beta" are ignored."""
    numbers = [int(v) for v in versions if v.isascii() and v.isdigit()]
    return str(max(numbers) + 1) if numbers else "1"


def check_batch(batch: CommitBatch) -> None:
    """Refuse a malformed batch: parallel lists of different lengths, or an event id given
    twice. Ids are unique across batches by construction (``engine/ids.py``); stores keep no
    index to check that, since every commit would pay for it."""
    ids = batch.event_ids
    if not (len(batch.records) == len(ids) == len(batch.causation)):
        raise StoreError("commit batch: records, event ids and causation differ in length")
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        for event_id in ids:
            if event_id in seen:
                raise StoreError(f"commit batch: event id '{event_id}' is given twice")
            seen.add(event_id)


def check_owners(held_by: Iterable[tuple[str, str | None]], owner: str | None) -> None:
    """Refuse a commit from ``owner`` when any (execution, its owner now) pair shows the
    execution not held by ``owner``; see the module docstring. Every engine path claims an
    execution before it drives it, so an engine's batch about an execution held by nobody
    comes from a machine that lost it: once another engine has ended it, that machine would
    complete its nodes a second time."""
    if owner is None:
        return
    lost = sorted(eid for eid, holder in held_by if holder != owner)
    if lost:
        raise StoreError(
            f"commit refused: execution(s) {', '.join(lost)} are not held by this process now"
            " (taken over by another, or ended)"
        )


def check_records(batch: CommitBatch) -> None:
    """Refuse a node record without a state, or an execution record without a status that
    is not ``JOURNAL_ONLY``."""
    for _, record in batch.records:
        if record.node is not None and record.state is None:
            raise StoreError(f"node record '{record.type}' for '{record.node}' has no state")
        if record.node is None and record.status is None and record.type not in JOURNAL_ONLY:
            raise StoreError(f"execution record '{record.type}' has no status")


def apply_execution_record(execution: ExecutionRecord, record: Record) -> None:
    """Move ``execution`` as an execution record says (what the SQL stores' update does)."""
    if record.type in JOURNAL_ONLY:
        return
    execution.status = cast(ExecutionStatus, record.status)  # checked by the caller
    if record.phase is not None:
        execution.phase = record.phase
    if record.type == STARTED:
        execution.started_at = record.at
    finished = finished_at(record)
    if finished is not KEEP:
        execution.finished_at = finished
    error = execution_error(record)
    if error is not KEEP:
        execution.error = error
    if record.status in FINAL_EXECUTION_STATES:
        execution.owner = None
        execution.lease_until = None
    execution.updated_at = record.at


def log_rows(batch: CommitBatch) -> list[tuple[Any, ...]]:
    """The batch's node log lines as rows of ``LOG_COLS`` (``store/sql/rows.py``), in
    order. The lines come from workers: whatever they hold is made to fit the columns, never
    refused, so that an attempt's outcome is not lost over its log."""
    rows: list[tuple[Any, ...]] = []
    for execution_id, logged in batch.logs:
        node, attempt = str(logged.node)[:128], int(logged.attempt)
        for line in logged.lines:
            if not isinstance(line, dict):
                continue
            at = line.get("at")
            rows.append(
                (
                    execution_id,
                    node,
                    attempt,
                    float(at) if isinstance(at, int | float) else logged.at,
                    str(line.get("level") or "INFO")[:16],
                    str(line.get("logger") or "")[:255],
                    str(line.get("message") or ""),
                )
            )
    return rows


def trigger_pending(record: ExecutionRecord, trigger: PendingTrigger) -> bool:
    """``Store.trigger_pending`` on a record held in memory (the caller makes it atomic)."""
    if record.status is not ExecutionStatus.PENDING or record.correlation_id is not None:
        return False
    record.inputs, record.overrides = trigger.inputs, trigger.overrides
    record.correlation_id = trigger.correlation_id
    if trigger.distrust:
        record.trust = Trust.UNTRUSTED
    return True
