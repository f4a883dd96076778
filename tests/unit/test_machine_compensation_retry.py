"""A compensation that failed is tried again when a retried execution fails again."""

from __future__ import annotations

from orchestrion.core.events import (
    CompensationFailed,
    CompensationSucceeded,
    ErrorInfo,
    NodeFailed,
    NodeSucceeded,
    RetryRequested,
    RunCompensation,
    Started,
)
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.plan import Plan
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.definition.model import WorkflowSpec

BOOM = ErrorInfo("permanent", "boom")


def test_failed_compensation_is_retried_after_an_execution_retry() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "saga",
            "dag": {
                "nodes": [
                    {"id": "book", "handler": "noop", "compensate": "undo"},
                    {
                        "id": "pay",
                        "handler": "noop",
                        "dependencies": ["book"],
                        "retry": {"max_attempts": 1},
                    },
                ]
            },
        }
    )
    machine = ExecutionMachine(Plan.build(spec), "e1")
    machine.apply(Started(0))
    machine.apply(NodeSucceeded("book", 1, 1))
    step = machine.apply(NodeFailed("pay", 1, 2, BOOM))
    assert step.commands == [RunCompensation("book", 1)]
    machine.apply(CompensationFailed("book", 3, BOOM))
    assert machine.status is ExecutionStatus.FAILED

    step = machine.apply(RetryRequested(4))
    assert [r.type for r in step.records if r.node == "book"] == ["node.compensation_reset"]
    step = machine.apply(NodeFailed("pay", 2, 5, BOOM))
    # A new round: its tasks are not taken for the first one's (the dispatch guard).
    assert step.commands == [RunCompensation("book", 2)]
    machine.apply(CompensationSucceeded("book", 6))
    assert machine.node_state("book") is NodeState.COMPENSATED
    assert machine.status is ExecutionStatus.FAILED
