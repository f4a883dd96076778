"""The state machine and success criteria: it asks for a verdict, journals it, and ends by it."""

from __future__ import annotations

import textwrap

from orchestrion.core.criteria import CriterionResult
from orchestrion.core.events import (
    CancelRequested,
    CompensationSucceeded,
    CriteriaJudged,
    ExecutionFinished,
    ExecutionTimedOut,
    JudgeCriteria,
    NodeSkipped,
    NodeSucceeded,
    RetryRequested,
    RunCompensation,
    Started,
)
from orchestrion.core.machine import ExecutionMachine
from orchestrion.core.plan import Plan
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.definition.model import WorkflowSpec
from orchestrion.handlers.loading import load_definition

X = ExecutionStatus


def _spec(extra: str = "", when: str = "", a: str = "") -> WorkflowSpec:
    text = textwrap.dedent(
        f"""
        name: m
        {extra}
        success_criteria:
          - all_tasks_completed
          - {{condition: "a.output.ok", required: false}}
        dag:
          nodes:
            - {{id: a, handler: noop {a}}}
            - {{id: b, handler: noop, dependencies: [a] {when}}}
        """
    )
    return load_definition(text).spec


def _ran(spec: WorkflowSpec) -> tuple[ExecutionMachine, JudgeCriteria]:
    machine = ExecutionMachine(Plan.build(spec), "e1")
    machine.apply(Started(1.0))
    machine.apply(NodeSucceeded("a", 1, 2.0, {"ok": True}))
    step = machine.apply(NodeSucceeded("b", 1, 3.0, None))
    assert machine.status is X.RUNNING  # not complete before the verdict
    assert step.records[-1].type == "node.completed"
    [ask] = [c for c in step.commands if isinstance(c, JudgeCriteria)]
    return machine, ask


def _verdict(ask: JudgeCriteria, *passed: bool, at: float = 4.0) -> CriteriaJudged:
    conditions = ("all_tasks_completed", "a.output.ok")
    outcomes = tuple(
        CriterionResult(c, c == conditions[0], ok, ok, None)
        for c, ok in zip(conditions, passed, strict=True)
    )
    return CriteriaJudged(at, outcomes, ask.round)


def test_the_verdict_completes_the_execution_and_is_journalled() -> None:
    machine, ask = _ran(_spec())
    assert (ask.at, ask.incomplete, ask.round) == (3.0, (), 1)
    step = machine.apply(_verdict(ask, True, False))  # an optional one failed: reported only
    judged, completed = step.records
    assert judged.type == "execution.criteria_evaluated" and judged.status is X.RUNNING
    assert judged.data is not None and judged.data["passed"] is True
    assert [c["passed"] for c in judged.data["criteria"]] == [True, False]
    assert completed.type == "execution.completed"
    assert step.commands == [ExecutionFinished(X.COMPLETED)]
    assert machine.status is X.COMPLETED and machine.error is None


def test_a_required_criterion_that_failed_fails_the_execution_after_compensating() -> None:
    machine, ask = _ran(_spec(a=", compensate: {handler: noop}"))
    step = machine.apply(_verdict(ask, False, True))
    assert [r.type for r in step.records] == [
        "execution.criteria_evaluated",
        "execution.compensating",
    ]
    assert step.commands == [RunCompensation("a", 1)]
    assert machine.error is not None and machine.error["category"] == "success_criteria"
    assert machine.error["criteria"] == ["all_tasks_completed"]
    assert "all_tasks_completed" in machine.error["message"]
    step = machine.apply(CompensationSucceeded("a", 5.0))
    assert step.records[-1].type == "execution.failed"
    assert step.records[-1].data == {"error": machine.error}
    assert machine.status is X.FAILED


def test_without_compensation_it_fails_at_once() -> None:
    machine, ask = _ran(_spec("on_failure: none"))
    step = machine.apply(_verdict(ask, False, True))
    assert [r.type for r in step.records] == ["execution.criteria_evaluated", "execution.failed"]
    assert step.commands == [ExecutionFinished(X.FAILED)]


def test_skipped_nodes_are_named_in_the_request() -> None:
    machine = ExecutionMachine(Plan.build(_spec(when=', when: "false"')), "e1")
    machine.apply(Started(1.0))
    machine.apply(NodeSucceeded("a", 1, 2.0, {"ok": True}))
    step = machine.apply(NodeSkipped("b", 1, 3.0))
    [ask] = [c for c in step.commands if isinstance(c, JudgeCriteria)]
    assert ask.incomplete == (("b", "skipped"),)


def test_stale_verdicts_are_ignored() -> None:
    machine, ask = _ran(_spec())
    assert machine.apply(CriteriaJudged(4.0, (), ask.round + 1)).records == []  # not asked
    machine.apply(CancelRequested(4.5))
    assert machine.status is X.CANCELLED
    assert machine.apply(_verdict(ask, True, True)).records == []  # after the cancel
    # A retry asks again (a new round; every node had completed): the old answer is stale.
    step = machine.apply(RetryRequested(5.0))
    [again] = [c for c in step.commands if isinstance(c, JudgeCriteria)]
    assert again.round == ask.round + 1
    assert machine.apply(_verdict(ask, True, True)).records == []
    assert machine.apply(_verdict(again, True, True)).records[-1].type == "execution.completed"


def test_a_timeout_while_judging_fails_and_the_late_verdict_is_stale() -> None:
    machine, ask = _ran(_spec("on_failure: none"))
    step = machine.apply(ExecutionTimedOut(4.0))
    assert step.records[-1].type == "execution.failed" and machine.status is X.FAILED
    assert machine.apply(_verdict(ask, True, True)).records == []


def test_recovery_asks_again_and_a_retry_of_a_failed_verdict_judges_again() -> None:
    machine, _ask = _ran(_spec("on_failure: none"))
    restored = ExecutionMachine(machine.plan, "e1")
    restored.restore(X.RUNNING, "run", {n: machine.nodes[i] for i, n in enumerate(("a", "b"))})
    [again] = [c for c in restored.recover(9.0).commands if isinstance(c, JudgeCriteria)]
    assert again.incomplete == ()
    restored.apply(_verdict(again, False, True))
    assert restored.status is X.FAILED
    step = restored.apply(RetryRequested(10.0))  # nothing to run again: judged again at once
    assert restored.node_state("a") is NodeState.COMPLETED
    assert [type(c) for c in step.commands] == [JudgeCriteria]
