"""From engine and store records to API bodies: UPPERCASE states, ISO 8601 UTC times, ``*_ms``.

Node errors are shown without their traceback: the API never discloses a stack trace (the
store keeps it for the server's own tools). An ``ExecutionView`` (``redaction.py``) masks what
the caller may not see; the default one shows everything.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from orchestrion.api.models import (
    ChildProgress,
    CriterionOut,
    DefinitionDetail,
    DefinitionSummary,
    EventOut,
    ExecutionDetail,
    ExecutionState,
    ExecutionSummary,
    NodeDetail,
    NodeStateName,
    NoticeOut,
    ResultsBody,
    ResultsResponse,
)
from orchestrion.api.redaction import ExecutionView
from orchestrion.core.rendered import public_data
from orchestrion.core.result import ExecutionResult, duration_ms
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.governance.trust import Trust
from orchestrion.store import rules
from orchestrion.store.base import DefinitionRecord, EventRecord, ExecutionRecord

__all__ = [
    "definition_detail",
    "definition_summary",
    "event_out",
    "execution_detail",
    "execution_state",
    "execution_summary",
    "results_response",
    "utc",
]


_SHOW_ALL = ExecutionView()


def utc(timestamp: float | None) -> datetime | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC)


# A state is a ``StrEnum``: its text is its value, and ``upper`` gives a plain ``str``
# without the enum's ``value`` property (a Python-level descriptor, slow in 3.11).


def execution_state(status: ExecutionStatus) -> ExecutionState:
    return status.upper()  # type: ignore[return-value]  # the Literal lists them all


def _node_state(state: NodeState) -> NodeStateName:
    return state.upper()  # type: ignore[return-value]


def public_error(error: dict[str, Any] | None) -> dict[str, Any] | None:
    if error is None:
        return None
    return {key: value for key, value in error.items() if key != "traceback"}


def _public_data(data: dict[str, Any] | None) -> dict[str, Any] | None:
    if data is None:
        return None
    cleaned = dict(data)
    # The journal stores states as the engine names them; the API writes them UPPERCASE.
    for key in ("state", "status"):
        if isinstance(cleaned.get(key), str):
            cleaned[key] = cleaned[key].upper()
    for key in ("error", "execution_error"):
        if isinstance(cleaned.get(key), dict):
            cleaned[key] = public_error(cleaned[key])
    return cleaned


def execution_detail(
    record: ExecutionRecord,
    result: ExecutionResult,
    *,
    include_outputs: bool = True,
    progress: dict[str, dict[str, int]] | None = None,
    children: dict[str, ChildProgress] | None = None,
    view: ExecutionView = _SHOW_ALL,
) -> ExecutionDetail:
    nodes = {
        node_id: NodeDetail(
            state=_node_state(node.state),
            attempt=node.attempt,
            started_at=utc(node.started_at),
            finished_at=utc(node.finished_at),
            duration_ms=duration_ms(node.started_at, node.finished_at),
            waited_ms=None if node.waited is None else round(node.waited * 1000, 3),
            error=view.error(node_id, public_error(node.error)),
            output=view.output(node_id, node.output) if include_outputs else None,
            wait_reason=node.wait_reason,
            compensation=node.compensation,
            progress=(progress or {}).get(node_id),
            child=(children or {}).get(node_id),
        )
        for node_id, node in result.nodes.items()
    }
    state = execution_state(result.status)
    return ExecutionDetail(
        id=record.id,
        execution_id=record.id,
        definition_id=record.definition_id,
        workflow=result.workflow,
        version=result.version,
        state=state,
        status=state,
        created_at=utc(record.created_at),
        started_at=utc(result.started_at),
        finished_at=utc(result.finished_at),
        duration_ms=duration_ms(result.started_at, result.finished_at),
        inputs=view.inputs(record.inputs),
        error=view.execution_error(public_error(result.error)),
        correlation_id=record.correlation_id,
        parent_execution_id=record.parent_execution_id,
        parent_node_id=record.parent_node_id,
        trust=Trust.of(record.trust).value,
        node_states={node_id: node.state for node_id, node in nodes.items()},
        nodes=nodes,
        success_criteria=[
            CriterionOut(
                condition=c.condition,
                required=c.required,
                passed=c.passed,
                value=view.text(c.value),
                detail=view.text(c.detail),
            )
            for c in result.success_criteria
        ],
        notices=[
            NoticeOut(
                kind=n["kind"],
                rule=n.get("rule"),
                node=n.get("node"),
                teams=list(n.get("teams") or []),
                message=str(view.notice(n.get("node"), n.get("message")) or ""),
                at=utc(n.get("at")),
                delivered=bool(n.get("delivered")),
            )
            for n in result.notices
        ],
    )


_MESSAGES = {
    ExecutionStatus.PENDING: "Workflow has not been triggered yet.",
    ExecutionStatus.RUNNING: "Workflow is still running.",
    ExecutionStatus.WAITING: "Workflow is waiting (approval, timer or retry).",
    ExecutionStatus.PAUSED: "Workflow is paused.",
    ExecutionStatus.COMPLETED: "Results retrieved successfully.",
    ExecutionStatus.FAILED: "Workflow failed.",
    ExecutionStatus.CANCELLED: "Workflow was cancelled.",
}


def results_response(result: ExecutionResult, view: ExecutionView = _SHOW_ALL) -> ResultsResponse:
    status = result.status
    shown = view.result(result.result)
    return ResultsResponse(
        execution_id=result.execution_id,
        status=execution_state(status),
        completed=status is ExecutionStatus.COMPLETED,
        results=ResultsBody(final_status=f"workflow_{status.value}", aggregated_results=shown),
        result=shown,
        error=view.execution_error(public_error(result.error)),
        message=_MESSAGES[status],
    )


def execution_summary(
    record: ExecutionRecord, definition: DefinitionRecord | None
) -> ExecutionSummary:
    return ExecutionSummary(
        execution_id=record.id,
        workflow=definition.name if definition else None,
        version=definition.version if definition else None,
        definition_id=record.definition_id,
        status=execution_state(record.status),
        created_at=utc(record.created_at),
        started_at=utc(record.started_at),
        finished_at=utc(record.finished_at),
        trigger=rules.trigger_of(record),
        parent_execution_id=record.parent_execution_id,
    )


def _node_count(definition: DefinitionRecord) -> int:
    nodes = definition.spec.get("dag", {}).get("nodes", [])
    return len(nodes) if isinstance(nodes, list) else 0


def definition_summary(definition: DefinitionRecord) -> DefinitionSummary:
    return DefinitionSummary(
        id=definition.id,
        name=definition.name,
        version=definition.version,
        created_at=datetime.fromtimestamp(definition.created_at, UTC),
        nodes=_node_count(definition),
        dialect=definition.dialect,
        source_format=definition.source_format,
        trust=Trust.of(definition.trust).value,
        status=definition.status,
        created_by=definition.created_by,
        status_changed_at=utc(definition.status_changed_at),
        status_changed_by=definition.status_changed_by,
    )


def definition_detail(
    definition: DefinitionRecord, *, include_source: bool = False
) -> DefinitionDetail:
    return DefinitionDetail(
        **definition_summary(definition).model_dump(),
        spec=definition.spec,
        source=definition.source if include_source else None,
    )


def event_out(event: EventRecord, view: ExecutionView = _SHOW_ALL) -> EventOut:
    """The journal entry as sent; ``view`` (its execution's, for callers without admin)
    masks its data."""
    # Rendered inputs are node data: served where outputs are (``routes/inputs.py``).
    data = view.event_data(event.node_id, _public_data(public_data(event.data)))
    return EventOut(
        seq=event.seq,
        id=event.id,
        type=event.type,
        execution_id=event.execution_id,
        node_id=event.node_id,
        attempt=event.attempt,
        at=datetime.fromtimestamp(event.at, UTC),
        correlation_id=event.correlation_id,
        causation_id=event.causation_id,
        data=data,
    )
