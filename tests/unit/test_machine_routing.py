"""The state machine and routing / error handling rules: notices journalled with the step
that decides them, rules on the run skipped when nothing else is left, and failures decided
by error type (retry, queue, halt)."""

from __future__ import annotations

from typing import Any

from orchestrion.core.events import (
    ErrorInfo,
    NodeFailed,
    NodeSucceeded,
    NodeWaiting,
    NoticeDelivered,
    Notify,
    ScheduleTimer,
    Started,
)
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.plan import Plan
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.handlers.loading import load_definition

NOTICE = {"kind": "escalation", "rule": 1, "teams": ["ops"], "message": "low score"}


def _machine(**sections: Any) -> ExecutionMachine:
    spec = load_definition(
        {
            "name": "m",
            "dag": {
                "nodes": [
                    {"id": "a", "handler": "noop"},
                    {"id": "b", "handler": "noop", "dependencies": ["a"]},
                    {"id": "c", "handler": "noop"},
                ]
            },
            **sections,
        }
    ).spec
    machine = ExecutionMachine(Plan.build(spec), "e1")
    machine.apply(Started(1.0))
    return machine


def test_a_fired_rule_journals_its_notice_before_its_node_completes() -> None:
    machine = _machine(routing=[{"condition": "a.output", "action": "escalate", "target": "ops"}])
    machine.apply(NodeSucceeded("a", 1, 2.0, {"x": 1}))
    output = {"fired": True, "rule": 1, "action": "escalate", "notice": NOTICE}
    step = machine.apply(NodeSucceeded("routing-1", 1, 3.0, output))
    assert [r.type for r in step.records][:2] == ["execution.notice", "node.completed"]
    notice = step.records[0].data
    assert notice is not None and notice["node"] == "routing-1" and notice["workflow"] == "m"
    assert notice["attempt"] == 1 and notice["teams"] == ["ops"]
    [notify] = [c for c in step.commands if isinstance(c, Notify)]
    assert notify.data == notice
    quiet = machine.apply(NodeSucceeded("routing-1", 1, 3.5, output))  # a duplicate: stale
    assert quiet.records == [] and quiet.commands == []
    delivered = machine.apply(NoticeDelivered(4.0, "e1:routing-1:1:escalation"))
    assert [(r.type, r.data) for r in delivered.records] == [
        ("execution.notice_delivered", {"key": "e1:routing-1:1:escalation"})
    ]


def test_a_rule_not_fired_notices_nothing() -> None:
    machine = _machine(routing=[{"condition": "a.output", "action": "escalate", "target": "ops"}])
    machine.apply(NodeSucceeded("a", 1, 2.0, {}))
    step = machine.apply(NodeSucceeded("routing-1", 1, 3.0, {"fired": False}))
    assert "execution.notice" not in [r.type for r in step.records]


def test_an_approval_gate_notices_its_approvers_and_holds_what_follows() -> None:
    gate = {"condition": "a.output", "action": "require_approval", "approvers": ["cfo"]}
    machine = _machine(routing=[gate])
    machine.apply(NodeSucceeded("a", 1, 2.0, {}))
    assert machine.node_state("b") is NodeState.PENDING  # b waits for the gate too
    notice = {**NOTICE, "kind": "approval_required"}
    step = machine.apply(NodeWaiting("routing-1", 1, 3.0, "approval", None, {"notice": notice}))
    assert [r.type for r in step.records][:2] == ["execution.notice", "node.waiting"]
    machine.apply(NodeSucceeded("c", 1, 3.5, None))
    assert machine.status is ExecutionStatus.WAITING
    assert machine.node_state("b") is NodeState.PENDING


def test_rules_on_the_run_are_skipped_when_nothing_else_is_left() -> None:
    machine = _machine(
        routing=[{"condition": "workflow.duration > 60", "action": "alert", "recipients": ["o"]}]
    )
    wake = machine.apply(NodeWaiting("routing-1", 1, 1.5, "routing", 61.0, {"rule": 1}))
    assert any(isinstance(c, ScheduleTimer) for c in wake.commands)
    machine.apply(NodeSucceeded("a", 1, 2.0, None))
    machine.apply(NodeSucceeded("c", 1, 2.5, None))
    step = machine.apply(NodeSucceeded("b", 1, 3.0, None))
    assert machine.node_state("routing-1") is NodeState.SKIPPED
    assert machine.nodes[machine.plan.index["routing-1"]].wait_reason == "run_ended"
    assert machine.status is ExecutionStatus.COMPLETED
    assert step.records[-1].type == "execution.completed"


def test_error_handling_retries_with_its_own_policy_then_halts_by_type() -> None:
    machine = _machine(
        on_failure="none",
        error_handling=[
            {"error_type": "timeout", "action": "retry", "max_attempts": 2},
            {"error_type": "validation_error", "action": "halt", "notify": ["data"]},
        ],
    )
    timeout = ErrorInfo("timeout", "slow", transient=True)
    first = machine.apply(NodeFailed("c", 1, 2.0, timeout))
    assert first.records[-1].type == "node.retry_scheduled"
    assert first.records[-1].data is not None
    assert first.records[-1].data["error_handling"] == {"rule": 1, "action": "retry"}
    machine.nodes[machine.plan.index["c"]].attempt = 2  # the retry's attempt ran
    machine.nodes[machine.plan.index["c"]].state = NodeState.RUNNING
    machine.nodes[machine.plan.index["c"]].wait_reason = None
    second = machine.apply(NodeFailed("c", 2, 3.0, timeout))
    assert second.records[-1].type == "node.failed"  # its 2 attempts, not the default 3
    invalid = ErrorInfo("validation", "amount is not a number", transient=True)
    halted = machine.apply(NodeFailed("a", 1, 4.0, invalid))
    assert machine.status is ExecutionStatus.FAILED
    assert machine.error is not None and machine.error["category"] == "halted"
    assert machine.error["rule"] == 2 and machine.error["node"] == "a"
    types = [r.type for r in halted.records]
    assert "node.retry_scheduled" not in types  # transient, but the rule halts at once
    assert "execution.notice" in types and types[-1] == "execution.failed"
    [notify] = [c for c in halted.commands if isinstance(c, Notify)]
    assert (notify.data["kind"], notify.data["teams"]) == ("halt", ["data"])


def test_a_queue_rule_keeps_trying_a_resource_that_is_away() -> None:
    machine = _machine(
        error_handling=[{"error_type": "resource_unavailable", "action": "queue", "max_wait": 5}]
    )
    away = ErrorInfo("connection", "refused", transient=True)
    run = machine.nodes[machine.plan.index["c"]]
    for attempt in range(1, 8):  # far past the default policy's 3 attempts
        step = machine.apply(NodeFailed("c", attempt, float(attempt), away))
        assert step.records[-1].type == "node.retry_scheduled"
        assert step.records[-1].data is not None
        assert step.records[-1].data["delay"] <= 5
        run.attempt, run.state, run.wait_reason = attempt + 1, NodeState.RUNNING, None


def test_a_rule_on_the_run_takes_no_concurrency_slot() -> None:
    machine = _machine(
        concurrency=1,
        routing=[{"condition": "workflow.duration > 60", "action": "alert", "recipients": ["o"]}],
    )
    machine.apply(NodeWaiting("routing-1", 1, 1.5, "routing", 61.0, {"rule": 1}))
    at = 2.0
    for _ in range(3):  # one task at a time, none held behind the watching rule
        [queued] = [n for n in "abc" if machine.node_state(n) is NodeState.QUEUED]
        machine.apply(NodeSucceeded(queued, 1, at, None))
        at += 1
    assert machine.status is ExecutionStatus.COMPLETED
