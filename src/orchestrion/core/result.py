"""What a caller gets back about an execution: its status, result and every node's outcome."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from orchestrion.core.criteria import CriterionResult
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.core.trust_level import Trust

__all__ = [
    "ExecutionResult",
    "ExecutionSnapshot",
    "NodeResult",
    "NodeSnapshot",
    "duration_ms",
    "iso_utc",
]


class ExecutionSnapshot(Protocol):
    """What ``ExecutionResult.build`` reads of a stored execution (the store's record)."""

    @property
    def id(self) -> str: ...
    @property
    def status(self) -> ExecutionStatus: ...
    @property
    def result(self) -> Any: ...
    @property
    def error(self) -> dict[str, Any] | None: ...
    @property
    def created_at(self) -> float: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def trust(self) -> object: ...


class NodeSnapshot(Protocol):
    """What ``ExecutionResult.build`` reads of a stored node run (the store's record)."""

    @property
    def node_id(self) -> str: ...
    @property
    def state(self) -> NodeState: ...
    @property
    def attempt(self) -> int: ...
    @property
    def output(self) -> Any: ...
    @property
    def error(self) -> dict[str, Any] | None: ...
    @property
    def started_at(self) -> float | None: ...
    @property
    def finished_at(self) -> float | None: ...
    @property
    def wait_reason(self) -> str | None: ...
    @property
    def compensation(self) -> str | None: ...


def iso_utc(timestamp: float | None) -> str | None:
    """Epoch seconds as the API writes times: ISO 8601 in UTC (``...Z``)."""
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).isoformat().replace("+00:00", "Z")


def duration_ms(start: float | None, end: float | None) -> float | None:
    """Milliseconds between two epoch times, rounded as the API rounds them."""
    if start is None or end is None:
        return None
    return round((end - start) * 1000, 3)


@dataclass(frozen=True, slots=True)
class NodeResult:
    """One node's final (or current) state in an execution."""

    node_id: str
    state: NodeState
    attempt: int
    output: Any = None
    error: dict[str, Any] | None = None
    started_at: float | None = None
    finished_at: float | None = None
    wait_reason: str | None = None
    waited: float | None = None  # seconds of ``duration`` spent waiting (a person, a timer)
    # "done" (undone: the node is compensated), "failed" (its compensation failed: the node
    # stays completed, its error the compensation's), or None (no compensation ran)
    compensation: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    def to_dict(self) -> dict[str, Any]:
        """The node as the API shows it (UPPERCASE state, ISO 8601 UTC times, ``*_ms``)."""
        return {
            "state": self.state.value.upper(),
            "attempt": self.attempt,
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "duration_ms": duration_ms(self.started_at, self.finished_at),
            "waited_ms": None if self.waited is None else round(self.waited * 1000, 3),
            "error": self.error,
            "output": self.output,
            "wait_reason": self.wait_reason,
            "compensation": self.compensation,
        }


@dataclass(frozen=True, slots=True)
class ExecutionResult:
    """An execution as seen from outside: ``ok`` when it completed."""

    execution_id: str
    workflow: str
    version: str
    status: ExecutionStatus
    result: Any
    error: dict[str, Any] | None
    nodes: dict[str, NodeResult] = field(default_factory=dict)
    created_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    trust: Trust = Trust.UNTRUSTED  # the execution's (governance/trust.py)
    success_criteria: tuple[CriterionResult, ...] = ()  # as last evaluated
    notices: tuple[dict[str, Any], ...] = ()  # routing and halt notices (core/notices.py)

    @property
    def ok(self) -> bool:
        return self.status is ExecutionStatus.COMPLETED

    @property
    def duration(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return self.finished_at - self.started_at

    @property
    def outputs(self) -> dict[str, Any]:
        return {
            node_id: node.output
            for node_id, node in self.nodes.items()
            if node.state in (NodeState.COMPLETED, NodeState.COMPENSATED)
        }

    @classmethod
    def build(
        cls,
        execution: ExecutionSnapshot,
        workflow: str,
        version: str,
        runs: Sequence[NodeSnapshot],
        order: tuple[str, ...] = (),
        waited: Mapping[str, float] | None = None,
        criteria: tuple[CriterionResult, ...] = (),
        notices: tuple[dict[str, Any], ...] = (),
    ) -> ExecutionResult:
        by_id = {run.node_id: run for run in runs}
        known = set(order)
        ids = list(order) + [r.node_id for r in runs if r.node_id not in known]
        nodes = {}
        for node_id in ids:
            run = by_id.get(node_id)
            if run is None:
                nodes[node_id] = NodeResult(node_id, NodeState.PENDING, 0)
                continue
            nodes[node_id] = NodeResult(
                node_id,
                run.state,
                run.attempt,
                run.output,
                run.error,
                run.started_at,
                run.finished_at,
                run.wait_reason,
                (waited or {}).get(node_id),
                run.compensation,
            )
        return cls(
            execution_id=execution.id,
            workflow=workflow,
            version=version,
            status=execution.status,
            result=execution.result,
            error=execution.error,
            nodes=nodes,
            created_at=execution.created_at,
            started_at=execution.started_at,
            finished_at=execution.finished_at,
            trust=Trust.of(execution.trust),
            success_criteria=criteria,
            notices=notices,
        )

    def to_dict(self) -> dict[str, Any]:
        """The execution in the API's shape (``GET /v1/workflows/{id}``), plus ``result``.

        ``execution_id`` and ``status`` are the canonical names; ``id`` and ``state`` repeat
        them, as the API does, for the reference examples' clients. States are UPPERCASE,
        times ISO 8601 UTC, durations ``*_ms``.
        """
        status = self.status.value.upper()
        nodes = {node_id: node.to_dict() for node_id, node in self.nodes.items()}
        return {
            "execution_id": self.execution_id,
            "id": self.execution_id,
            "workflow": self.workflow,
            "version": self.version,
            "status": status,
            "state": status,
            "created_at": iso_utc(self.created_at),
            "started_at": iso_utc(self.started_at),
            "finished_at": iso_utc(self.finished_at),
            "duration_ms": duration_ms(self.started_at, self.finished_at),
            "error": self.error,
            "trust": Trust.of(self.trust).value,
            "result": self.result,
            "node_states": {node_id: node["state"] for node_id, node in nodes.items()},
            "nodes": nodes,
            "success_criteria": [criterion.to_dict() for criterion in self.success_criteria],
            "notices": [{**n, "at": iso_utc(n.get("at"))} for n in self.notices],
        }
