"""Routing and error handling rules read at load: located errors, the nodes rules become,
and what each error type maps to."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

from orchestrion.definition.error_rules import error_actions
from orchestrion.definition.routing import duration_bounds, routing_rules, with_routing
from orchestrion.errors import DefinitionError
from orchestrion.handlers.loading import load_definition

DORA = Path(__file__).resolve().parents[2] / "examples/reference/dora-compliance-assessment.yaml"


def _flow(**sections: Any) -> dict[str, Any]:
    return {
        "name": "r",
        "dag": {
            "nodes": [
                {"id": "score", "handler": "noop", "config": {"outputs": ["value"]}},
                {"id": "next", "handler": "noop", "dependencies": ["score"]},
            ]
        },
        **sections,
    }


def _problems(**sections: Any) -> list[tuple[str | None, str, str]]:
    with pytest.raises(DefinitionError) as refused:
        load_definition(_flow(**sections))
    return [(i.field, i.code, i.message) for i in refused.value.issues]


def test_the_dora_rules_become_nodes_and_gate_what_follows_the_approval() -> None:
    spec = with_routing(load_definition(DORA).spec)
    nodes = {node.id: node for node in spec.dag.nodes}
    assert nodes["routing-1"].dependencies == ("document_analysis",)
    assert nodes["routing-2"].config["approvers"] == ["cfo", "cro"]
    assert nodes["routing-3"].dependencies == ()  # on the run: watches workflow.duration
    assert nodes["routing-3"].config["watch"] == [7200.0]
    assert "routing-2" in nodes["implementation_planning"].dependencies
    assert "routing-2" in nodes["report_generation"].dependencies
    assert "routing-1" not in nodes["gap_identification"].dependencies  # escalation gates nothing
    assert with_routing(spec) is spec  # expanding twice changes nothing


def test_a_bare_field_declared_by_one_task_reads_that_task() -> None:
    rule = {"condition": "value < 0.5", "action": "escalate", "target": "ops"}
    [read] = routing_rules(load_definition(_flow(routing=[rule])).spec)
    assert (read.tasks, read.fields) == (("score",), {"value": "score"})


@pytest.mark.parametrize(
    ("rule", "field", "code", "says"),
    [
        ({"condition": "score.output", "action": "shout"}, "routing[0].action", "literal_error",
         "unknown action 'shout'"),
        ({"condition": "score.output", "action": "escalate"}, "routing[0].target", "missing",
         "needs 'target'"),
        ({"condition": "score.output", "action": "alert", "recipients": ["ops"], "target": "x"},
         "routing[0].target", "unknown_key", "not used by action 'alert'"),
        ({"condition": "task.nope.outputs.x", "action": "escalate", "target": "ops"},
         "routing[0].condition", "unknown_task", "unknown task 'nope'"),
        ({"condition": "workflow.cost > 1", "action": "escalate", "target": "ops"},
         "routing[0].condition", "unknown_name", "workflow.cost is not known"),
        ({"condition": "missing_field > 1", "action": "escalate", "target": "ops"},
         "routing[0].condition", "unknown_output", "is no task's declared output"),
        ({"condition": "workflow.duration > 5", "action": "require_approval",
          "approvers": ["cfo"]}, "routing[0].condition", "nothing_to_gate", "on task outputs"),
        ({"condition": "{{ score.output", "action": "escalate", "target": "ops"},
         "routing[0].condition", "template", "condition"),
        ({"condition": "secrets.X", "action": "escalate", "target": "ops"},
         "routing[0].condition", "secret_use", "may not read secrets"),
        ({"condition": "score.output", "action": "alert", "recipients": ["ops"],
          "message": "token {{ secrets.TOKEN }}"},
         "routing[0].message", "secret_field", "'message' reads secrets"),
        ({"condition": "score.output", "action": "escalate", "target": "ops",
          "message": "{{ secrets['TOKEN'] | length }}"},
         "routing[0].message", "secret_field", "headers, json or body of an http node"),
        ({"condition": "score.output", "action": "escalate", "target": "ops",
          "message": "late by {{ workflow.duration"},
         "routing[0].message", "template_syntax", "'message' does not parse"),
        ({"condition": "score.output", "action": "alert", "recipients": ["no spaces"]},
         "routing[0].recipients", "value_error", "not a team name"),
    ],
)  # fmt: skip
def test_a_bad_rule_is_refused_naming_its_field(
    rule: dict[str, Any], field: str, code: str, says: str
) -> None:
    problems = _problems(routing=[rule])
    assert any(f == field and c == code and says in m for f, c, m in problems), problems


def test_a_routing_node_may_not_be_written_nor_its_id_taken() -> None:
    flow = _flow(routing=[{"condition": "score.output", "action": "escalate", "target": "a"}])
    flow["dag"]["nodes"].append({"id": "routing-1", "handler": "noop"})
    flow["dag"]["nodes"].append({"id": "x", "handler": "routing"})
    with pytest.raises(DefinitionError) as refused:
        load_definition(flow)
    codes = {issue.code for issue in refused.value.issues}
    assert {"duplicate_id", "reserved_handler"} <= codes


def test_errors_are_located_on_their_line_in_yaml() -> None:
    text = textwrap.dedent(
        """\
        name: r
        dag:
          nodes:
            - {id: a, handler: noop}
        error_handling:
          - error_type: agent_timeout
            action: retry
            max_attempts: 3
          - error_type: cosmic_rays
            action: halt
        """
    )
    with pytest.raises(DefinitionError) as refused:
        load_definition(text)
    [issue] = refused.value.issues
    assert (issue.field, issue.line, issue.code) == (
        "error_handling[1].error_type",
        9,
        "unknown_error_type",
    )


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        ({"error_type": "timeout", "action": "wait"}, "error_handling[0].action", "unknown action"),
        ({"error_type": "timeout", "action": "retry", "notify": ["a"]},
         "error_handling[0].notify", "only for action 'halt'"),
        ({"error_type": "timeout", "action": "halt", "max_attempts": 2},
         "error_handling[0].max_attempts", "not used by action 'halt'"),
        ({"error_type": "timeout", "action": "retry", "tasks": ["ghost"]},
         "error_handling[0].tasks", "unknown node 'ghost'"),
        ({"error_type": "timeout", "action": "retry", "initial_delay": 5, "max_delay": 1},
         "error_handling[0].max_delay", ">= initial_delay"),
    ],
)  # fmt: skip
def test_a_bad_error_rule_is_refused_naming_its_field(
    rule: dict[str, Any], field: str, says: str
) -> None:
    problems = _problems(error_handling=[rule])
    assert any(f == field and says in m for f, _c, m in problems), problems


def test_error_types_map_to_the_engines_categories_and_policies() -> None:
    spec = load_definition(DORA).spec
    rules = error_actions(spec)["*"]
    kinds = [(sorted(categories), action.kind) for categories, action in rules]
    assert kinds[0] == (["timeout"], "retry")
    assert kinds[1] == (["connection", "http_5xx", "rate_limited", "unavailable"], "queue")
    assert kinds[2][1] == "halt" and "validation" in kinds[2][0]
    retry, queue, halt = (action for _c, action in rules)
    assert retry.policy is not None and retry.policy.max_attempts == 3
    assert queue.policy is not None and queue.policy.max_attempts == 100
    assert (halt.policy, halt.notify) == (None, ("data_team", "workflow_owner"))


def test_duration_bounds_are_read_from_either_side() -> None:
    assert duration_bounds("workflow.duration > 7200 or 60 <= workflow.duration") == (60.0, 7200.0)
    assert duration_bounds("task.a.outputs.x > 3") == ()


def test_the_number_of_rules_is_bounded() -> None:
    rule = {"condition": "score.output", "action": "alert", "recipients": ["ops"]}
    [(field, code, _message)] = _problems(routing=[rule] * 101)
    assert (field, code) == ("routing", "too_many_rules")
    errors = [{"error_type": "timeout", "action": "halt"}] * 101
    [(field, code, _message)] = _problems(error_handling=errors)
    assert (field, code) == ("error_handling", "too_many_rules")


def test_the_workflow_schema_describes_the_rules() -> None:
    import json

    import jsonschema_rs

    from orchestrion.definition.json_schema import shipped_schema_text

    validator = jsonschema_rs.validator_for(json.loads(shipped_schema_text()))
    flow = _flow(
        routing=[{"condition": "score.output", "action": "alert", "recipients": "ops"}],
        error_handling=[{"error_type": "timeout", "action": "halt", "notify": ["data"]}],
    )
    assert validator.is_valid(flow)
    assert not validator.is_valid({**flow, "routing": [{"condition": "x", "action": "shout"}]})
