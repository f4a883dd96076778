"""Control requests that meet a compensation: a pause is recorded, not carried out (a
compensation is not paused, as a cancel does not stop it); a compensation that begins lifts
a pause; a forced cancel names the nodes it leaves not undone."""

from __future__ import annotations

from orchestrion.core.control import pause_request
from orchestrion.core.events import (
    CancelNode,
    CancelRequested,
    CompensationSucceeded,
    ErrorInfo,
    NodeFailed,
    NodeStarted,
    NodeSucceeded,
    PauseRequested,
    ResumeRequested,
    RunCompensation,
    Started,
)
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.plan import Plan
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.definition.model import WorkflowSpec

BOOM = ErrorInfo("permanent", "boom")


def _saga() -> ExecutionMachine:
    """book and ship complete (each with a compensation); pay runs, and will fail."""
    spec = WorkflowSpec.model_validate(
        {
            "name": "saga",
            "dag": {
                "nodes": [
                    {"id": "book", "handler": "noop", "compensate": "undo"},
                    {"id": "ship", "handler": "noop", "compensate": "undo"},
                    {
                        "id": "pay",
                        "handler": "noop",
                        "dependencies": ["book", "ship"],
                        "retry": {"max_attempts": 1},
                    },
                ]
            },
        }
    )
    machine = ExecutionMachine(Plan.build(spec), "e1")
    machine.apply(Started(0))
    machine.apply(NodeSucceeded("book", 1, 1))
    machine.apply(NodeSucceeded("ship", 1, 1))
    machine.apply(NodeStarted("pay", 1, 2))
    return machine


def test_a_pause_while_compensating_is_recorded_and_the_compensation_goes_on() -> None:
    machine = _saga()
    step = machine.apply(NodeFailed("pay", 1, 3, BOOM))
    first = step.commands[-1]
    assert isinstance(first, RunCompensation)
    step = machine.apply(PauseRequested(4))
    assert machine.status is ExecutionStatus.RUNNING  # not paused: it compensates
    assert [r.type for r in step.records] == [RecordType.EXECUTION_PAUSE_REQUESTED]
    assert step.records[0].status is ExecutionStatus.RUNNING
    assert pause_request(machine.error) == {"at": 4}
    assert "pause requested while compensating" in str(machine.error["message"])  # type: ignore[index]
    assert step.commands == []
    # A resume finds nothing paused; the compensation runs to its end, which fails.
    assert machine.apply(ResumeRequested(5)).records == []
    step = machine.apply(CompensationSucceeded(first.node, 6))
    second = step.commands[-1]
    assert isinstance(second, RunCompensation) and second.node != first.node
    machine.apply(CompensationSucceeded(second.node, 7))
    assert machine.status is ExecutionStatus.FAILED
    assert pause_request(machine.error) == {"at": 4}


def test_a_compensation_that_begins_lifts_a_pause() -> None:
    machine = _saga()
    machine.apply(PauseRequested(3))
    assert machine.status is ExecutionStatus.PAUSED
    step = machine.apply(NodeFailed("pay", 1, 4, BOOM))  # it was running: a pause lets it end
    assert machine.status is ExecutionStatus.RUNNING
    compensating = [r for r in step.records if r.type == RecordType.EXECUTION_COMPENSATING]
    assert compensating and compensating[0].status is ExecutionStatus.RUNNING
    assert compensating[0].data is not None and compensating[0].data["pause_lifted"] is True
    assert isinstance(step.commands[-1], RunCompensation)


def test_a_forced_cancel_names_the_nodes_it_leaves_not_undone() -> None:
    machine = _saga()
    step = machine.apply(NodeFailed("pay", 1, 3, BOOM))
    under_way = step.commands[-1]
    assert isinstance(under_way, RunCompensation)
    step = machine.apply(CancelRequested(4, "stop", force=True))
    assert machine.status is ExecutionStatus.CANCELLED
    assert CancelNode(under_way.node, 1, compensation=True) in step.commands
    cancelled = [r for r in step.records if r.type == RecordType.EXECUTION_CANCELLED]
    assert cancelled[0].data is not None
    assert cancelled[0].data["abandoned"] == [
        under_way.node,
        "book" if under_way.node == "ship" else "ship",
    ]
    assert (
        machine.error is not None and machine.error["abandoned"] == cancelled[0].data["abandoned"]
    )
    assert machine.node_state("book") is NodeState.COMPLETED  # not undone
