"""What the client returns about executions: a submission, an accepted request, an execution
with its nodes (as the engine's own ``ExecutionResult``), its results, and pages of them.

Field names follow the API: ``execution_id`` and ``status`` are canonical; a body that has only
the reference examples' ``id`` or ``state`` is read as well.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from orchestrion.client.wire import error_body, execution_status, node_state, timestamp
from orchestrion.core.criteria import CriterionResult
from orchestrion.core.result import ExecutionResult, NodeResult
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.governance.trust import Trust

__all__ = [
    "Accepted",
    "Execution",
    "ExecutionPage",
    "ExecutionResults",
    "ExecutionSummary",
    "Submission",
]


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
        error=error_body(data.get("error")),
        started_at=timestamp(data.get("started_at")),
        finished_at=timestamp(data.get("finished_at")),
        wait_reason=data.get("wait_reason"),
        waited=None if data.get("waited_ms") is None else float(data["waited_ms"]) / 1000,
        compensation=data.get("compensation"),
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
    success_criteria: tuple[CriterionResult, ...] = ()
    notices: tuple[dict[str, Any], ...] = ()  # kind, rule, node, teams, message, at, delivered

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
            success_criteria=self.success_criteria,
            notices=self.notices,
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
            error=error_body(data.get("error")),
            inputs=dict(data.get("inputs") or {}),
            correlation_id=data.get("correlation_id"),
            created_at=timestamp(data.get("created_at")),
            started_at=timestamp(data.get("started_at")),
            finished_at=timestamp(data.get("finished_at")),
            trust=Trust.of(data.get("trust")),
            success_criteria=tuple(
                CriterionResult.from_dict(c)
                for c in data.get("success_criteria") or []
                if isinstance(c, dict)
            ),
            notices=tuple(
                {**n, "at": timestamp(n.get("at"))}
                for n in data.get("notices") or []
                if isinstance(n, dict)
            ),
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
