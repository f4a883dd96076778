"""Success criteria at load: the two formats, the shorthand, and located definition errors."""

from __future__ import annotations

import json
import textwrap

import jsonschema_rs
import pytest

from orchestrion.definition.criteria import compile_criteria
from orchestrion.definition.json_schema import shipped_schema_text
from orchestrion.errors import DefinitionError, DefinitionIssue
from orchestrion.handlers.loading import load_definition


def _issues(text: str) -> list[DefinitionIssue]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(textwrap.dedent(text))
    return caught.value.issues


AGENTS = """\
workflow:
  id: w
  tasks:
    - id: a
      agent: noop
      outputs: [{name: score}]
    - id: b
      agent: noop
      depends_on: [a]
      outputs: [{name: score}, {name: other}]
  success_criteria:
{criteria}
"""


def _agents(*criteria: str) -> str:
    return AGENTS.replace("{criteria}", "\n".join(f"    - {c}" for c in criteria))


def test_canonical_and_agent_formats_load_the_same_criteria() -> None:
    canonical = load_definition(
        textwrap.dedent(
            """
            name: c
            success_criteria:
              - all_nodes_completed
              - {condition: "a.output.x > 1", required: false, description: big enough}
            dag:
              nodes: [{id: a, handler: noop}]
            """
        )
    )
    [done, big] = canonical.spec.success_criteria
    assert (done.condition, done.required) == ("all_nodes_completed", True)
    assert (big.condition, big.required, big.description) == ("a.output.x > 1", False, "big enough")
    assert canonical.warnings == []
    agents = load_definition(_agents('{condition: "other > 1"}'))
    assert [c.condition for c in agents.spec.success_criteria] == ["other > 1"]
    [plan] = compile_criteria(agents.spec)
    assert plan.bound == {"other": "b"} and plan.reads == frozenset({"b"})


def test_malformed_criteria_are_errors_on_their_line() -> None:
    issues = _issues(_agents("{required: true}", "{condition: 5}", '{condition: "x", when: 1}'))
    found = {(i.line, i.field, i.message) for i in issues}
    assert (12, "workflow.success_criteria[0].condition", "missing required key 'condition'") in (
        found
    )
    assert (13, "workflow.success_criteria[1].condition", "Input should be a valid string") in found
    assert (14, "workflow.success_criteria[2].when", "unknown key 'when'") in found


@pytest.mark.parametrize(
    ("criterion", "code", "words"),
    [
        ('"score >= 0.7"', "ambiguous_output", "declared by several tasks (a, b)"),
        ('"task.nope.outputs.x"', "unknown_task", "unknown task 'nope'"),
        ("\"task['gone'].outputs.x\"", "unknown_task", "unknown task 'gone'"),
        ('"workflow.length > 3"', "unknown_name", "workflow.length is not known"),
        ('"{{ x | nosuch }}"', "template", "no filter named 'nosuch'"),
        ('"secrets.TOKEN == 1"', "secret_use", "may not read secrets"),
        ('"x >"', "template", "syntax error"),
        ('"nope.output.score > 1"', "unknown_node", "output of unknown node 'nope'"),
    ],
)
def test_what_can_be_known_at_load_is_a_located_error(
    criterion: str, code: str, words: str
) -> None:
    [issue] = _issues(_agents(criterion))
    assert issue.code == code
    assert words in issue.message
    assert issue.line == 12  # the criterion's own line
    assert issue.field == "workflow.success_criteria[0].condition"


def test_an_explicit_task_path_resolves_an_ambiguous_field() -> None:
    loaded = load_definition(_agents('"task.a.outputs.score >= 0.7"', '"workflow.duration < 60"'))
    first, second = compile_criteria(loaded.spec)
    assert first.fields == () and first.reads == frozenset({"a"})
    assert second.fields == () and second.reads == frozenset()


def test_fields_nobody_declares_are_left_to_the_end_of_the_run() -> None:
    loaded = load_definition(_agents('"no_critical_gaps"'))
    [plan] = compile_criteria(loaded.spec)
    assert plan.fields == ("no_critical_gaps",) and plan.bound == {}
    assert plan.reads == frozenset({"a", "b"})  # it may be in any node's output


def test_criteria_reading_classified_nodes_are_marked() -> None:
    loaded = load_definition(
        textwrap.dedent(
            """
            name: c
            success_criteria: ["p.output.ok", "q.output.ok", "anything"]
            dag:
              nodes:
                - {id: p, handler: noop, data_classification: pii}
                - {id: q, handler: noop}
            """
        )
    )
    assert [plan.classified for plan in compile_criteria(loaded.spec)] == [True, False, True]


def test_the_shipped_schema_takes_both_forms_of_a_criterion() -> None:
    validator = jsonschema_rs.validator_for(json.loads(shipped_schema_text()))
    flow = {"name": "c", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    good = [
        "all_tasks_completed",
        {"condition": "a.output.x > 1", "required": False, "description": "why"},
    ]
    assert validator.is_valid({**flow, "success_criteria": good})
    assert not validator.is_valid({**flow, "success_criteria": [{"required": True}]})
    assert not validator.is_valid({**flow, "success_criteria": [{"condition": "x", "when": 1}]})
