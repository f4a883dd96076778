"""What the client returns: small frozen dataclasses read from the API's JSON.

States are UPPERCASE on the wire and become ``ExecutionStatus``/``NodeState`` here; times are
ISO 8601 strings on the wire and epoch seconds here, as in the embedded engine, so that
``Execution.to_result()`` is an ``ExecutionResult``. ``to_dict()`` gives the wire shape back
(UPPERCASE states, ISO 8601 UTC times, ``*_ms``), the one ``ExecutionResult.to_dict()`` and
the CLI's ``--json`` print too.

Field names follow the API: ``execution_id`` and ``status`` are canonical; a body that has only
the reference examples' ``id`` or ``state`` is read as well.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrion.core.record_types import FINAL_EXECUTION_RECORDS
from orchestrion.core.result import ExecutionResult, NodeResult
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.governance.trust import Trust

__all__ = [
    "Accepted",
    "DeadLetter",
    "DeadLetterAction",
    "DeadLetterPage",
    "Definition",
    "DefinitionSummary",
    "Event",
    "EventPage",
    "Execution",
    "ExecutionPage",
    "ExecutionResults",
    "ExecutionSummary",
    "Health",
    "Submission",
    "execution_status",
    "node_state",
    "timestamp",
]

FINAL_EVENT_TYPES = FINAL_EXECUTION_RECORDS


def execution_status(value: Any) -> ExecutionStatus:
    """``"RUNNING"`` (or ``"running"``) as ``ExecutionStatus.RUNNING``."""
    return ExecutionStatus(str(value).lower())


def node_state(value: Any) -> NodeState:
    """``"COMPLETED"`` (or ``"completed"``) as ``NodeState.COMPLETED``."""
    return NodeState(str(value).lower())


def timestamp(value: Any) -> float | None:
    """An ISO 8601 string (naive means UTC) or epoch number as epoch seconds; None stays None."""
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return float(value)
    moment = datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _error(value: Any) -> dict[str, Any] | None:
    if value is None or isinstance(value, dict):
        return value
    return {"message": str(value)}


@dataclass(frozen=True, slots=True)
class Submission:
    """``POST /v1/workflow``: the stored definition and the new PENDING execution."""

    workflow_definition_id: str
    execution_id: str
    name: str
    version: str
    status: ExecutionStatus
    message: str = ""
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Submission:
        return cls(
            workflow_definition_id=str(data["workflow_definition_id"]),
            execution_id=str(data["execution_id"]),
            name=str(data["name"]),
            version=str(data["version"]),
            status=execution_status(data["status"]),
            message=str(data.get("message") or ""),
            warnings=[str(w) for w in data.get("warnings") or []],
        )


@dataclass(frozen=True, slots=True)
class Accepted:
    """The 202 answer of trigger, cancel, retry, pause, resume and start_definition."""

    execution_id: str
    status: ExecutionStatus
    message: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Accepted:
        return cls(
            execution_id=str(data["execution_id"]),
            status=execution_status(data["status"]),
            message=str(data.get("message") or ""),
        )


def _node(node_id: str, state: Any, data: dict[str, Any]) -> NodeResult:
    return NodeResult(
        node_id=node_id,
        state=node_state(data.get("state", state)),
        attempt=int(data.get("attempt") or 0),
        output=data.get("output"),
        error=_error(data.get("error")),
        started_at=timestamp(data.get("started_at")),
        finished_at=timestamp(data.get("finished_at")),
        wait_reason=data.get("wait_reason"),
        waited=None if data.get("waited_ms") is None else float(data["waited_ms"]) / 1000,
    )


@dataclass(frozen=True, slots=True)
class Execution:
    """``GET /v1/workflows/{id}``: an execution and its nodes, as the engine's own result.

    ``result`` is the workflow's result when the server sends it; ``Client.wait`` and
    ``Client.run`` always fill it from ``/results``.
    """

    execution_id: str
    definition_id: str
    workflow: str
    version: str
    status: ExecutionStatus
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    result: Any = None
    error: dict[str, Any] | None = None
    inputs: dict[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    trust: Trust = Trust.UNTRUSTED

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED

    @property
    def finished(self) -> bool:
        return self.status in FINAL_EXECUTION_STATES

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def node_states(self) -> dict[str, NodeState]:
        return {node_id: node.state for node_id, node in self.nodes.items()}

    @property
    def outputs(self) -> dict[str, Any]:
        return self.to_result().outputs

    def to_result(self) -> ExecutionResult:
        """The same ``ExecutionResult`` the embedded engine returns for this execution."""
        return ExecutionResult(
            execution_id=self.execution_id,
            workflow=self.workflow,
            version=self.version,
            status=self.status,
            result=self.result,
            error=self.error,
            nodes=dict(self.nodes),
            created_at=self.created_at,
            started_at=self.started_at,
            finished_at=self.finished_at,
            trust=self.trust,
        )

    def to_dict(self) -> dict[str, Any]:
        """The API's shape of the execution, plus ``result`` (as ``ExecutionResult.to_dict()``)."""
        return self.to_result().to_dict()

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Execution:
        details: dict[str, Any] = data.get("nodes") or {}
        states: dict[str, Any] = data.get("node_states") or {}
        nodes = {
            node_id: _node(node_id, state, details.get(node_id) or {})
            for node_id, state in states.items()
        }
        for node_id, detail in details.items():
            if node_id not in nodes:
                nodes[node_id] = _node(node_id, "pending", detail or {})
        return cls(
            execution_id=str(data.get("execution_id") or data["id"]),
            definition_id=str(data.get("definition_id") or ""),
            workflow=str(data.get("workflow") or ""),
            version=str(data.get("version") or ""),
            status=execution_status(data.get("status") or data["state"]),
            nodes=nodes,
            result=data.get("result"),
            error=_error(data.get("error")),
            inputs=dict(data.get("inputs") or {}),
            correlation_id=data.get("correlation_id"),
            created_at=timestamp(data.get("created_at")),
            started_at=timestamp(data.get("started_at")),
            finished_at=timestamp(data.get("finished_at")),
            trust=Trust.of(data.get("trust")),
        )


@dataclass(frozen=True, slots=True)
class ExecutionResults:
    """``GET /v1/workflows/{id}/results``: the workflow's result (reference 003's shape)."""

    execution_id: str
    status: ExecutionStatus
    completed: bool
    final_status: str
    result: Any = None
    error: Any = None
    message: str = ""

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ExecutionResults:
        results = data.get("results") or {}
        return cls(
            execution_id=str(data["execution_id"]),
            status=execution_status(data["status"]),
            completed=bool(data.get("completed")),
            final_status=str(results.get("final_status") or ""),
            result=data.get("result", results.get("aggregated_results")),
            error=data.get("error"),
            message=str(data.get("message") or ""),
        )


@dataclass(frozen=True, slots=True)
class ExecutionSummary:
    """One row of ``GET /v1/workflows``."""

    execution_id: str
    workflow: str
    version: str
    definition_id: str
    status: ExecutionStatus
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ExecutionSummary:
        return cls(
            execution_id=str(data.get("execution_id") or data["id"]),
            workflow=str(data.get("workflow") or ""),
            version=str(data.get("version") or ""),
            definition_id=str(data.get("definition_id") or ""),
            status=execution_status(data["status"]),
            created_at=timestamp(data.get("created_at")),
            started_at=timestamp(data.get("started_at")),
            finished_at=timestamp(data.get("finished_at")),
        )


@dataclass(frozen=True, slots=True)
class ExecutionPage:
    """One page of executions, newest first; pass ``next_cursor`` on for the next."""

    items: list[ExecutionSummary]
    next_cursor: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> ExecutionPage:
        return cls(
            items=[ExecutionSummary.from_api(item) for item in data.get("items") or []],
            next_cursor=data.get("next_cursor"),
        )


@dataclass(frozen=True, slots=True)
class DefinitionSummary:
    """One stored definition version; ``nodes`` is its node count."""

    id: str
    name: str
    version: str
    created_at: float | None = None
    nodes: int = 0
    dialect: str | None = None
    source_format: str | None = None

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DefinitionSummary:
        return cls(**_summary_fields(data))


@dataclass(frozen=True, slots=True)
class Definition(DefinitionSummary):
    """A stored definition version with its canonical ``spec``."""

    spec: dict[str, Any] = field(default_factory=dict)

    @property
    def node_ids(self) -> list[str]:
        return [str(node["id"]) for node in (self.spec.get("dag") or {}).get("nodes") or []]

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Definition:
        return cls(**_summary_fields(data), spec=dict(data.get("spec") or {}))


def _summary_fields(data: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": str(data["id"]),
        "name": str(data["name"]),
        "version": str(data["version"]),
        "created_at": timestamp(data.get("created_at")),
        "nodes": int(data.get("nodes") or 0),
        "dialect": data.get("dialect"),
        "source_format": data.get("source_format"),
    }


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the event journal (``seq`` is global and increasing)."""

    seq: int
    id: str
    type: str
    execution_id: str
    node_id: str | None = None
    attempt: int = 0
    at: float | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def node_state(self) -> NodeState | None:
        """A node event's new state (None for execution events or when not recorded)."""
        state = self.data.get("state")
        if self.node_id is None or state is None:
            return None
        return node_state(state)

    @property
    def is_final(self) -> bool:
        """True for the event that ends an execution (completed, failed or cancelled)."""
        return self.node_id is None and self.type in FINAL_EVENT_TYPES

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Event:
        return cls(
            seq=int(data["seq"]),
            id=str(data.get("id") or ""),
            type=str(data["type"]),
            execution_id=str(data["execution_id"]),
            node_id=data.get("node_id"),
            attempt=int(data.get("attempt") or 0),
            at=timestamp(data.get("at")),
            correlation_id=data.get("correlation_id"),
            causation_id=data.get("causation_id"),
            data=dict(data.get("data") or {}),
        )


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of events; ask again with ``after=next_after`` for the next."""

    items: list[Event]
    next_after: int

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> EventPage:
        items = [Event.from_api(item) for item in data.get("items") or []]
        fallback = items[-1].seq if items else 0
        return cls(items=items, next_after=int(data.get("next_after") or fallback))


@dataclass(frozen=True, slots=True)
class Health:
    """``GET /health``: ``ok`` unless a check failed (the server answered 503)."""

    status: str
    checks: dict[str, Any] = field(default_factory=dict)
    version: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> Health:
        return cls(
            status=str(data.get("status") or "unknown"),
            checks=dict(data.get("checks") or {}),
            version=data.get("version"),
        )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead letter, and why: a node that failed for good (``kind`` "node"), or a task
    message parked in the dead letter queue of scale-out mode (``kind`` "task").

    ``payload`` (the message as sent) is filled by ``get_dead_letter`` only; ``task`` is its
    task part, parsed.
    """

    id: str
    category: str
    message: str
    deliveries: int
    parked_at: float | None
    stream: str
    traceback: str | None = None
    first_sent_at: float | None = None
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    handler: str | None = None
    consumer: str | None = None
    payload: str | None = None
    kind: str = "task"  # "node": a node that failed for good; "task": a parked task message
    workflow: str | None = None

    @property
    def task(self) -> dict[str, Any] | None:
        """The parked task message's ``task`` object; None without a readable payload."""
        if not self.payload:
            return None
        try:
            data = json.loads(self.payload)
        except ValueError:
            return None
        task = data.get("task") if isinstance(data, dict) else None
        return task if isinstance(task, dict) else None

    def to_dict(self) -> dict[str, Any]:
        """Every field (epoch times); ``payload`` only when it was fetched."""
        data = asdict(self)
        if self.payload is None:
            del data["payload"]
        return data

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetter:
        return cls(
            id=str(data["id"]),
            category=str(data.get("category") or "unknown"),
            message=str(data.get("message") or ""),
            deliveries=int(data.get("deliveries") or 0),
            parked_at=timestamp(data.get("parked_at")),
            stream=str(data.get("stream") or ""),
            traceback=data.get("traceback"),
            first_sent_at=timestamp(data.get("first_sent_at")),
            execution_id=_optional_str(data.get("execution_id")),
            node_id=_optional_str(data.get("node_id")),
            attempt=_optional_int(data.get("attempt")),
            handler=_optional_str(data.get("handler")),
            consumer=_optional_str(data.get("consumer")),
            payload=_optional_str(data.get("payload")),
            kind=str(data.get("kind") or "task"),
            workflow=_optional_str(data.get("workflow")),
        )


@dataclass(frozen=True, slots=True)
class DeadLetterPage:
    """Dead letters, oldest first; ask again with ``after=next_after`` for the next page."""

    items: list[DeadLetter]
    next_after: str | None = None
    total: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "items": [item.to_dict() for item in self.items],
            "next_after": self.next_after,
            "total": self.total,
        }

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetterPage:
        items = [DeadLetter.from_api(item) for item in data.get("items") or []]
        return cls(
            items=items, next_after=data.get("next_after"), total=int(data.get("total") or 0)
        )


@dataclass(frozen=True, slots=True)
class DeadLetterAction:
    """What ``retry_dead_letter`` or ``drop_dead_letter`` did; ``stream_entry_id`` is the
    id of the task entry a retry added."""

    id: str
    action: str  # "retried" | "dropped"
    stream: str
    stream_entry_id: str | None = None
    execution_id: str | None = None
    node_id: str | None = None
    attempt: int | None = None
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_api(cls, data: dict[str, Any]) -> DeadLetterAction:
        return cls(
            id=str(data["id"]),
            action=str(data["action"]),
            stream=str(data.get("stream") or ""),
            stream_entry_id=_optional_str(data.get("stream_entry_id")),
            execution_id=_optional_str(data.get("execution_id")),
            node_id=_optional_str(data.get("node_id")),
            attempt=_optional_int(data.get("attempt")),
            message=str(data.get("message") or ""),
        )
