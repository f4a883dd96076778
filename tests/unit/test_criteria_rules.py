"""How success criteria evaluate at the end of a run (orchestrion.engine.criteria), by table."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from orchestrion.definition.criteria import CriterionPlan, compile_criteria
from orchestrion.engine.criteria import CriteriaFacts, evaluate
from orchestrion.handlers.loading import load_definition
from orchestrion.templates.rendering import TemplateLimits


def _plans(conditions: list[str]) -> tuple[CriterionPlan, ...]:
    text = textwrap.dedent(
        """
        workflow:
          id: w
          tasks:
            - {id: analyse, agent: noop, outputs: [{name: score}]}
            - {id: gaps, agent: noop, depends_on: [analyse]}
            - {id: report, agent: noop, depends_on: [gaps]}
        """
    )
    text += "  success_criteria:\n" + "".join(f"    - {c!r}\n" for c in conditions)
    return compile_criteria(load_definition(text).spec)


OUTPUTS: dict[str, Any] = {
    "analyse": {"score": 0.62, "shared": 1},
    "gaps": {"no_critical_gaps": True, "shared": 2, "count": 3},
    "report": {"summary": "x" * 500},
}


def _one(condition: str, **facts: Any) -> tuple[bool, Any, str | None]:
    facts.setdefault("outputs", OUTPUTS)
    facts.setdefault("inputs", {"floor": 0.5})
    [outcome] = evaluate(_plans([condition]), CriteriaFacts(**facts))
    assert outcome.condition == condition and outcome.required
    return outcome.passed, outcome.value, outcome.detail


@pytest.mark.parametrize(
    ("condition", "passed", "value", "detail"),
    [
        # a field a task declares is read from that task's output
        ("score >= 0.7", False, False, "evaluated to false; score = 0.62 (from analyse)"),
        ("score >= input.floor", True, True, "evaluated to true; score = 0.62 (from analyse)"),
        # a field nobody declares: the one node whose output has it
        ("no_critical_gaps", True, True, "evaluated to true; no_critical_gaps = true (from gaps)"),
        ("count > 2 and no_critical_gaps", True, True, None),
        # the explicit forms
        ("task.analyse.outputs.score < 0.7", True, True, "evaluated to true"),
        ("task.gaps.outputs.shared == 2", True, True, "evaluated to true"),
        ("gaps.output.count", True, 3, "evaluated to 3"),
        ("{{ report.output.summary | length }}", True, 500, "evaluated to 500"),
        # long or structured values are described, not shown
        ("report.output.summary", True, None, "evaluated to a str"),
        ("task.gaps.outputs", True, None, "evaluated to a dict"),
        # text that reads as false, as for when:
        ("{{ 'no' }}", False, "no", "evaluated to 'no'"),
    ],
)
def test_expressions(condition: str, passed: bool, value: Any, detail: str | None) -> None:
    got = _one(condition)
    assert got[:2] == (passed, value)
    if detail is not None:
        assert got[2] == detail


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("shared > 0", "output field 'shared' is in the outputs of analyse, gaps; write "
         "task.analyse.outputs.shared or task.gaps.outputs.shared"),
        ("missing_field", "no node's output has a field 'missing_field'"),
    ],
)  # fmt: skip
def test_bare_fields_that_are_ambiguous_or_missing_fail_with_the_reason(
    condition: str, reason: str
) -> None:
    assert _one(condition) == (False, None, reason)


def test_a_declared_field_missing_from_its_output_or_a_task_that_did_not_run() -> None:
    assert _one("score > 0", outputs={**OUTPUTS, "analyse": {"other": 1}}) == (
        False,
        None,
        "the output of task 'analyse' has no field 'score'",
    )
    without = {k: v for k, v in OUTPUTS.items() if k != "analyse"}
    assert _one("score > 0", outputs=without) == (
        False,
        None,
        "task 'analyse', which declares output 'score', did not complete",
    )


def test_a_task_that_did_not_complete_is_named() -> None:
    without = {k: v for k, v in OUTPUTS.items() if k != "gaps"}
    assert _one("task.gaps.outputs.count > 1", outputs=without) == (
        False,
        None,
        "task 'gaps' did not complete: it has no outputs to read",
    )


def test_the_result_node_comes_before_searching_every_output() -> None:
    outputs = {**OUTPUTS, "result": {"shared": 9}}
    passed, value, detail = _one("shared == 9", outputs=outputs, result_node="result")
    assert (passed, value) == (True, True)
    assert detail == "evaluated to true; shared = 9 (from result)"


def test_workflow_duration() -> None:
    assert _one("workflow.duration < 60", duration=12.5)[:2] == (True, True)
    assert _one("workflow.duration < 10", duration=12.5)[:2] == (False, False)
    passed, _value, detail = _one("workflow.duration < 10")  # start unknown
    assert not passed and detail is not None and "duration" in detail


def test_all_tasks_completed_names_what_did_not_complete() -> None:
    assert _one("all_tasks_completed") == (True, True, None)
    incomplete = tuple((f"n{i}", "skipped") for i in range(12))
    passed, value, detail = _one("all_tasks_completed", incomplete=incomplete)
    assert (passed, value) == (False, False)
    assert detail is not None
    assert detail.startswith("not completed: n0 (skipped), n1 (skipped)")
    assert detail.endswith("n9 (skipped) and 2 more")


def test_template_errors_and_limits_fail_the_criterion_not_the_engine() -> None:
    passed, _value, detail = _one("gaps.output.nope > 1")
    assert not passed and detail is not None and "nope" in detail
    plans = _plans(["{{ range(10000) | join(',') }}"])
    facts = CriteriaFacts(inputs={}, outputs=OUTPUTS)
    [outcome] = evaluate(plans, facts, TemplateLimits(max_output_bytes=100))
    assert not outcome.passed and outcome.detail


def test_values_of_classified_nodes_are_never_shown() -> None:
    text = textwrap.dedent(
        """
        name: c
        success_criteria: ["p.output.ssn == '123'", "q.output.x == 1"]
        dag:
          nodes:
            - {id: p, handler: noop, data_classification: phi}
            - {id: q, handler: noop}
        """
    )
    plans = compile_criteria(load_definition(text).spec)
    facts = CriteriaFacts(inputs={}, outputs={"p": {"ssn": "123"}, "q": {"x": 1}})
    hidden, shown = evaluate(plans, facts)
    assert hidden.passed and hidden.value is None
    assert hidden.detail is not None and "123" not in hidden.detail
    assert shown.passed and shown.value is True
