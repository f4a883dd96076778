"""A compensation runs as one call to its end: a handler that waits (for a time, a person or a
child execution) or fans out cannot be one. It was taken as done at once (a 60 s ``delay``
compensated in a millisecond); such a definition is now refused, naming the node and field."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.definition.model import WorkflowSpec
from orchestrion.definition.validate import validate_spec
from orchestrion.handlers.registry import default_registry


def _spec(compensate: Any) -> WorkflowSpec:
    return WorkflowSpec.model_validate(
        {
            "name": "undo",
            "dag": {"nodes": [{"id": "a", "handler": "noop", "compensate": compensate}]},
        }
    )


@pytest.mark.parametrize(
    "compensate",
    [
        {"handler": "delay", "config": {"seconds": 60}},
        {"handler": "timer", "config": {"seconds": 60}},
        {"handler": "approval"},
        {"handler": "workflow", "config": {"workflow": "other"}},
        {"handler": "map", "config": {"items": [1], "handler": "noop"}},
    ],
)
def test_a_compensation_that_would_wait_is_refused(compensate: dict[str, Any]) -> None:
    issues = validate_spec(_spec(compensate), default_registry())
    refused = [i for i in issues if i.code == "compensation_handler"]
    assert len(refused) == 1, issues
    assert refused[0].node == "a" and refused[0].field == "compensate.handler"
    assert compensate["handler"] in refused[0].message


@pytest.mark.parametrize("compensate", [{"handler": "noop"}, "noop", {"handler": "python"}])
def test_a_compensation_that_runs_to_its_end_is_taken(compensate: Any) -> None:
    issues = validate_spec(_spec(compensate), default_registry())
    assert not [i for i in issues if i.code == "compensation_handler"], issues


def test_the_transition_log_says_what_happened_to_a_compensation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import logging

    from orchestrion.core.events import Record
    from orchestrion.core.record_types import RecordType
    from orchestrion.core.states import NodeState
    from orchestrion.observability.feed import ExecutionInfo
    from orchestrion.observability.logging_setup import log_transitions, transitions_logger

    records = [
        Record(RecordType.NODE_COMPENSATION_FAILED, 1.0, "a", 1, NodeState.COMPLETED),
        Record(RecordType.NODE_COMPLETED, 1.0, "b", 1, NodeState.COMPLETED),
    ]
    with caplog.at_level(logging.INFO, logger=transitions_logger.name):
        log_transitions(ExecutionInfo("e1"), records)
    lines = [r.getMessage() for r in caplog.records if r.name == transitions_logger.name]
    assert lines == ["node a compensation_failed (attempt 1)", "node b completed (attempt 1)"]
