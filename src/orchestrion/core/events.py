"""What the state machine is told (events in) and what it answers (records and commands out).

Events carry the node id, the attempt they belong to and the time ``at`` (epoch seconds):
the machine reads no clock. An event for an attempt that is no longer current is stale and
is ignored, which is what makes a redelivered completion a no-op.

Records are the durable facts the store persists, in order, before any command is acted on.
Commands are what the runtime must do once the records are committed.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

from orchestrion.core.criteria import CriterionResult
from orchestrion.core.reasons import SkipReason
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus, NodeState

__all__ = [
    "CancelNode",
    "CancelRequested",
    "Command",
    "CompensationFailed",
    "CompensationSucceeded",
    "CriteriaJudged",
    "Dispatch",
    "ErrorInfo",
    "Event",
    "ExecutionFinished",
    "ExecutionTimedOut",
    "JudgeCriteria",
    "NodeFailed",
    "NodeLogged",
    "NodeSkipped",
    "NodeStarted",
    "NodeSucceeded",
    "NodeWaiting",
    "NoticeDelivered",
    "Notify",
    "PauseRequested",
    "Record",
    "ResumeRequested",
    "RetryRequested",
    "RunCompensation",
    "ScheduleTimer",
    "Started",
    "TimerFired",
    "TimerKind",
    "WaitResolved",
    "retry_after_seconds",
    "wait_seconds",
]


class TimerKind(StrEnum):
    """What a timer the machine schedules is for."""

    RETRY = "retry"  # a failed attempt's backoff is over: the next attempt is dispatched
    WAKE = "wake"  # a node's own wait ran out: its handler runs again to decide


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """A failure as stored and shown: what kind, what it said, where it came from."""

    category: str
    message: str
    transient: bool = False
    type: str | None = None
    traceback: str | None = None
    retry_after: float | None = None  # seconds the other side asked to wait (Retry-After)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "category": self.category,
            "message": self.message,
            "transient": self.transient,
        }
        if self.type:
            data["type"] = self.type
        if self.traceback:
            data["traceback"] = self.traceback
        if self.retry_after is not None:
            data["retry_after"] = self.retry_after
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ErrorInfo:
        return cls(
            category=str(data.get("category", "error")),
            message=str(data.get("message", "")),
            transient=bool(data.get("transient", False)),
            type=data.get("type"),
            traceback=data.get("traceback"),
            retry_after=wait_seconds(data.get("retry_after")),
        )


def wait_seconds(value: Any) -> float | None:
    """``value`` as a number of seconds one can wait (finite, not negative), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if 0 <= value < float("inf") else None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """A ``Retry-After`` header as seconds to wait from ``now`` (default: the clock's), or
    None when it says nothing one can wait for (absent, not a number or date, ``inf``).

    Both forms of RFC 9110 are read: delay-seconds (``120``; a fraction is taken too, a
    negative number is 0) and an HTTP date (``Wed, 21 Oct 2015 07:28:00 GMT``; one already
    past is 0). A date without a zone is taken as GMT, as RFC 9110 says all of them are."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        return _date_wait(text, time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None  # "inf", "nan": no wait anyone can keep
    return max(0.0, seconds)


def _date_wait(text: str, now: float) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000" zones: parsedate_to_datetime leaves them naive
        when = when.replace(tzinfo=UTC)
    try:
        return max(0.0, when.timestamp() - now)
    except (OverflowError, OSError, ValueError):
        return None


# ---------------------------------------------------------------- events (in)


@dataclass(frozen=True, slots=True)
class Started:
    """The execution was triggered."""

    at: float


@dataclass(frozen=True, slots=True)
class NodeStarted:
    """A worker began the attempt; ``inputs`` is its config as rendered, as it may be stored
    (``execution/rendered_inputs.py``), None when the config is empty or did not render."""

    node: str
    attempt: int
    at: float
    inputs: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NodeSucceeded:
    """The attempt finished with ``output``."""

    node: str
    attempt: int
    at: float
    output: Any = None


@dataclass(frozen=True, slots=True)
class NodeFailed:
    """The attempt raised or timed out."""

    node: str
    attempt: int
    at: float
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class NodeSkipped:
    """The node's ``when:`` condition was false when it became ready."""

    node: str
    attempt: int
    at: float
    reason: str = SkipReason.CONDITION_FALSE


@dataclass(frozen=True, slots=True)
class NodeWaiting:
    """The attempt parks until a decision or a time (approval, delay, review)."""

    node: str
    attempt: int
    at: float
    reason: str
    wake_at: float | None = None
    data: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class NodeLogged:
    """Log lines the attempt wrote, in order (``execution/log_capture.py``): each a dict of
    ``at``, ``level``, ``logger`` and ``message``. Not a state change: the machine never sees
    it; the engine stores the lines with the turn's commit."""

    node: str
    attempt: int
    at: float
    lines: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class WaitResolved:
    """A waiting node's wait ended (approved, timer fired): it completes or fails.

    ``decision``: a person's approve or reject (its output, or its output's ``review``, is
    the decision): one that finds the node no longer waiting is refused, and journalled as
    such. ``reply``: as ``RetryRequested.reply``; the machine reads neither."""

    node: str
    attempt: int
    at: float
    output: Any = None
    error: ErrorInfo | None = None
    decision: bool = False
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class TimerFired:
    """A timer scheduled by the machine came due (``kind`` says which)."""

    node: str
    attempt: int
    at: float
    kind: TimerKind = TimerKind.RETRY  # off the wire, its plain string (compares equal)


@dataclass(frozen=True, slots=True)
class CancelRequested:
    at: float
    reason: str = "cancelled by request"
    force: bool = False  # also abandon a compensation under way (which a cancel lets end)


@dataclass(frozen=True, slots=True)
class PauseRequested:
    at: float


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    at: float


@dataclass(frozen=True, slots=True)
class RetryRequested:
    """Run a finished execution again: from the nodes that did not complete, or, with
    ``node``, from that node and everything downstream of it (completed or not).

    ``reply``: where a requester in another process waits to hear whether the retry was
    applied or changed nothing (scale-out: a key the orchestrator answers on); the machine
    does not read it."""

    at: float
    node: str | None = None
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class ExecutionTimedOut:
    at: float


@dataclass(frozen=True, slots=True)
class CompensationSucceeded:
    node: str
    at: float
    output: Any = None


@dataclass(frozen=True, slots=True)
class CompensationFailed:
    node: str
    at: float
    error: ErrorInfo


@dataclass(frozen=True, slots=True)
class NoticeDelivered:
    """Every notice sink took the notice ``key`` (journalled, so a restart does not send it
    again)."""

    at: float
    key: str


@dataclass(frozen=True, slots=True)
class CriteriaJudged:
    """The success criteria were evaluated (the answer to ``JudgeCriteria``)."""

    at: float
    outcomes: tuple[CriterionResult, ...]
    round: int = 1  # the ``JudgeCriteria`` it answers: an answer to an older one is stale


Event = (
    Started
    | NodeStarted
    | NodeSucceeded
    | NodeFailed
    | NodeSkipped
    | NodeWaiting
    | NodeLogged
    | WaitResolved
    | TimerFired
    | CancelRequested
    | PauseRequested
    | ResumeRequested
    | RetryRequested
    | ExecutionTimedOut
    | CompensationSucceeded
    | CompensationFailed
    | CriteriaJudged
    | NoticeDelivered
)


# ---------------------------------------------------------------- records (out, persisted)


@dataclass(slots=True)
class Record:
    """One durable state change, journalled as an event and applied to the current state.

    ``node`` is None for execution-level records; then ``status`` is the execution's new
    status. For node records ``state`` is the node's new state and the node snapshot fields
    (attempt, timings, error, wait) are the node's values after the change.
    """

    type: RecordType
    at: float
    node: str | None = None
    attempt: int = 0
    state: NodeState | None = None
    status: ExecutionStatus | None = None
    data: dict[str, Any] | None = None
    output: Any = None
    has_output: bool = False
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wait_reason: str | None = None
    wake_at: float | None = None
    phase: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- commands (out, acted on)


@dataclass(frozen=True, slots=True)
class Dispatch:
    """Send the attempt to a worker. ``woken``: the attempt's own wait (timer, approval
    timeout) ran out, so its handler runs again to decide what that means."""

    node: str
    attempt: int
    woken: bool = False


@dataclass(frozen=True, slots=True)
class ScheduleTimer:
    """Deliver ``TimerFired(node, attempt, kind)`` at ``fire_at``."""

    node: str
    attempt: int
    fire_at: float
    kind: TimerKind = TimerKind.RETRY


@dataclass(frozen=True, slots=True)
class CancelNode:
    """Stop the attempt if it is still running; its result, if any, will be ignored
    (``compensation``: the node's compensation under way, which a forced cancel abandons)."""

    node: str
    attempt: int
    compensation: bool = False


@dataclass(frozen=True, slots=True)
class RunCompensation:
    """Run the node's compensation handler (``round``: which compensation of the execution
    this is, counted from 1, so a retried execution that fails again undoes its nodes anew
    while a takeover that resumes the same one does not send it twice)."""

    node: str
    round: int = 0


@dataclass(frozen=True, slots=True)
class ExecutionFinished:
    """The execution reached a final status; wake whoever waits for it."""

    status: ExecutionStatus


@dataclass(frozen=True, slots=True)
class JudgeCriteria:
    """Every node is final and none failed: evaluate the success criteria as of ``at`` and
    answer with ``CriteriaJudged``. ``incomplete`` names the nodes that did not end
    ``completed``, with their state."""

    at: float
    incomplete: tuple[tuple[str, str], ...] = ()
    round: int = 1


@dataclass(frozen=True, slots=True)
class Notify:
    """A notice was journalled (``execution.notice``): hand it to the notice sinks. ``data``
    is what the machine knows (kind, rule, teams, message, node, attempt)."""

    at: float
    data: dict[str, Any]


Command = (
    Dispatch
    | ScheduleTimer
    | CancelNode
    | RunCompensation
    | ExecutionFinished
    | JudgeCriteria
    | Notify
)
