"""Dialects: reference 000 (swarmlite) and 004 (agent platform) convert to the canonical model."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from orchestrion.definition.dialects import UNKNOWN_FORMAT_MESSAGE, convert, detect_dialect
from orchestrion.errors import DefinitionError, DefinitionIssue
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.loading import load_definition
from orchestrion.handlers.registry import HandlerRegistry

AGENTS = ("policy_analyzer", "gap_assessment", "risk_calculator", "implementation_planner")


async def _run(ctx: NodeContext, config: Any) -> Any:
    return None


REGISTRY = HandlerRegistry(
    [HandlerSpec("python", _run), HandlerSpec("noop", _run)]
    + [HandlerSpec(name, _run) for name in AGENTS]
)


def _load(text: str) -> Any:
    return load_definition(textwrap.dedent(text).lstrip("\n"), registry=REGISTRY)


def _issues(text: str) -> list[DefinitionIssue]:
    with pytest.raises(DefinitionError) as info:
        _load(text)
    return info.value.issues


def _find(issues: list[DefinitionIssue], fragment: str) -> DefinitionIssue:
    found = [issue for issue in issues if fragment in issue.message]
    assert found, [str(issue) for issue in issues]
    return found[0]


# ---------------------------------------------------------------- detection


@pytest.mark.parametrize(
    ("data", "dialect"),
    [
        ({"name": "x", "dag": {}}, "canonical"),
        ({"dag": {}}, "canonical"),
        ({"workflow_id": "x", "tasks": []}, "swarmlite"),
        ({"tasks": []}, "swarmlite"),
        ({"workflow": {"id": "x"}}, "agent_platform"),
        ({"workflow": "not a mapping", "name": "x"}, "canonical"),
        ({"steps": []}, None),
    ],
)
def test_detect(data: dict[str, Any], dialect: str | None) -> None:
    assert detect_dialect(data) == dialect


def test_unknown_shape_is_one_issue() -> None:
    conversion = convert({"steps": []})
    assert not conversion.recognised
    assert [issue.message for issue, _ in conversion.issues] == [UNKNOWN_FORMAT_MESSAGE]


# ---------------------------------------------------------------- reference 000


SWARM = """
workflow_id: sample
tasks:
  - id: a
    type: python
    depends_on: []
    data_classification: "PII"
    config:
      function: "load"
      params: {x: 1}
  - id: b
    type: python
    depends_on: [a]
    config:
      function: "clean"
retry_policy:
  max_attempts: 4
  delay_seconds: 2
  exponential_backoff: true
compensation_handlers:
  a: "undo_a"
"""


def test_swarmlite_converts() -> None:
    loaded = _load(SWARM)
    spec = loaded.spec
    assert loaded.dialect == "swarmlite"
    assert spec.name == "sample"
    assert spec.metadata == {"workflow_id": "sample"}
    a, b = spec.dag.nodes
    assert (a.id, a.handler, a.dependencies) == ("a", "python", ())
    assert a.config == {"function": "load", "params": {"x": 1}}
    assert a.data_classification == "pii"
    assert b.dependencies == ("a",)
    assert a.compensate is not None
    assert a.compensate.handler == "python"
    assert a.compensate.config == {"function": "undo_a"}
    assert b.compensate is None
    retry = spec.defaults.retry
    assert retry is not None
    assert (retry.max_attempts, retry.initial_delay, retry.multiplier, retry.jitter) == (
        4,
        2.0,
        2.0,
        "full",
    )
    assert retry.max_delay >= retry.initial_delay


def test_swarmlite_fixed_delay() -> None:
    loaded = _load(
        """
        workflow_id: w
        tasks: [{id: a, type: python}]
        retry_policy: {max_attempts: 2, delay_seconds: 45, exponential_backoff: false}
        """
    )
    retry = loaded.spec.defaults.retry
    assert retry is not None
    assert (retry.multiplier, retry.jitter, retry.initial_delay, retry.max_delay) == (
        1.0,
        "none",
        45.0,
        45.0,
    )


def test_swarmlite_max_delay() -> None:
    loaded = _load(
        """
        workflow_id: w
        tasks: [{id: a, type: python}]
        retry_policy: {delay_seconds: 1, max_delay_seconds: 8}
        """
    )
    retry = loaded.spec.defaults.retry
    assert retry is not None
    assert retry.max_delay == 8.0


@pytest.mark.parametrize(
    ("text", "fragment", "node", "field", "line"),
    [
        (
            """
            workflow_id: w
            owner: me
            tasks: [{id: a, type: python}]
            """,
            "unknown key 'owner'",
            None,
            "owner",
            2,
        ),
        (
            """
            workflow_id: w
            tasks:
              - id: a
                type: python
                retries: 3
            """,
            "unknown key 'retries'",
            "a",
            "retries",
            5,
        ),
        (
            """
            workflow_id: w
            tasks: [{id: a, type: python}]
            retry_policy:
              max_attempts: 2
              jitter: true
            """,
            "unknown key 'jitter'",
            None,
            "retry_policy.jitter",
            5,
        ),
        (
            """
            workflow_id: w
            tasks: [{id: a, type: python}]
            compensation_handlers:
              ghost: undo
            """,
            "compensation handler for unknown task 'ghost'",
            None,
            "compensation_handlers.ghost",
            4,
        ),
        (
            """
            workflow_id: w
            tasks:
              - id: a
                type: python
              - id: b
                type: python
                depends_on: [a, c]
            """,
            "unknown dependency 'c'",
            "b",
            "depends_on[1]",
            7,
        ),
        (
            """
            workflow_id: w
            tasks:
              - id: a
                type: pyhton
            """,
            "unknown handler 'pyhton'",
            "a",
            "type",
            4,
        ),
        (
            """
            workflow_id: w
            tasks:
              - id: a
                type: python
            retry_policy:
              delay_seconds: soon
            """,
            "invalid duration 'soon'",
            None,
            "retry_policy.delay_seconds",
            6,
        ),
        (
            """
            workflow_id: w
            tasks:
              - id: a
                type: python
                data_classification: secret
            """,
            "'public', 'internal', 'pii' or 'phi'",
            "a",
            "data_classification",
            5,
        ),
        (
            """
            workflow_id: w
            tasks:
              - id: a
                depends_on: []
            """,
            "missing required key 'type'",
            "a",
            "type",
            3,
        ),
    ],
)
def test_swarmlite_errors(
    text: str, fragment: str, node: str | None, field: str | None, line: int | None
) -> None:
    issue = _find(_issues(text), fragment)
    assert (issue.node, issue.field, issue.line) == (node, field, line), str(issue)


def test_swarmlite_compensation_config_errors_point_at_the_entry() -> None:
    registry = HandlerRegistry([HandlerSpec("noop", _run)])
    with pytest.raises(DefinitionError) as info:
        load_definition(
            "workflow_id: w\ntasks: [{id: a, type: noop}]\ncompensation_handlers:\n  a: undo\n",
            registry=registry,
        )
    issue = _find(info.value.issues, "unknown handler 'python'")
    assert (issue.node, issue.line) == ("a", 4)


# ---------------------------------------------------------------- reference 004


AGENT = """
workflow:
  id: "assess"
  name: "Assessment"
  version: "2.1"
  config:
    timeout: 600
    max_retries: 2
    parallel_execution: false
    audit_enabled: true
  triggers:
    - type: manual
      name: go
  tasks:
    - id: "analyse"
      name: "Analyse"
      agent: "policy_analyzer"
      config:
        timeout: 90
        priority: "high"
        resources: {cpu: "2"}
        model: big
      inputs:
        - name: documents
          type: file_list
          required: true
        - name: depth
          type: numeric
          default: 3
        - name: feed
          type: external_api
          source: feed_system
      outputs:
        - name: score
          type: numeric
    - id: "gaps"
      agent: "gap_assessment"
      depends_on: ["analyse"]
      inputs:
        - name: findings
          from_task: analyse
          field: results.items
        - name: everything
          sources: [analyse]
        - name: documents
          type: file_list
"""


def test_agent_platform_converts() -> None:
    loaded = _load(AGENT)
    spec = loaded.spec
    assert loaded.dialect == "agent_platform"
    assert (spec.name, spec.version, spec.timeout, spec.concurrency) == (
        "Assessment",
        "2.1",
        600,
        1,
    )
    assert spec.metadata == {"id": "assess", "parallel_execution": False, "audit_enabled": True}
    assert spec.defaults.retry is not None
    assert spec.defaults.retry.max_attempts == 3
    assert spec.triggers == ({"type": "manual", "name": "go"},)
    analyse, gaps = spec.dag.nodes
    assert (analyse.handler, analyse.name, analyse.timeout, analyse.priority) == (
        "policy_analyzer",
        "Analyse",
        90.0,
        75,
    )
    assert analyse.config == {
        "resources": {"cpu": "2"},
        "model": "big",
        "inputs": {
            "documents": "{{ input.documents }}",
            "depth": "{{ input.depth }}",
            "feed": {"type": "external_api", "source": "feed_system"},
        },
        "outputs": [{"name": "score", "type": "numeric"}],
    }
    assert gaps.dependencies == ("analyse",)
    assert gaps.config["inputs"] == {
        "findings": "{{ analyse.output.results.items }}",
        "everything": {"analyse": "{{ analyse.output }}"},
        "documents": "{{ input.documents }}",
    }
    documents, depth = spec.inputs["documents"], spec.inputs["depth"]
    assert (documents.type, documents.required) == ("array", True)
    assert (depth.type, depth.default, depth.required) == ("number", 3, False)
    assert loaded.warnings == []


def test_agent_platform_without_lifecycle_has_no_warning() -> None:
    loaded = _load(
        """
        workflow:
          id: w
          tasks:
            - {id: a, agent: policy_analyzer}
        """
    )
    assert loaded.warnings == []
    assert loaded.spec.name == "w"


def test_hyphenated_task_ids_use_the_nodes_mapping() -> None:
    loaded = _load(
        """
        workflow:
          id: w
          tasks:
            - {id: get-docs, agent: policy_analyzer}
            - id: use
              agent: gap_assessment
              depends_on: [get-docs]
              inputs:
                - {name: docs, from_task: get-docs, field: list}
        """
    )
    assert loaded.spec.dag.nodes[1].config["inputs"] == {
        "docs": "{{ nodes['get-docs'].output.list }}"
    }


@pytest.mark.parametrize(
    ("text", "fragment", "node", "field", "line"),
    [
        (
            """
            workflow:
              id: w
              tasks:
                - {id: a, agent: policy_analyzer}
                - id: b
                  agent: gap_assessment
                  inputs:
                    - name: x
                      from_task: a
                      field: y
            """,
            "input reads from task 'a', which is not in depends_on",
            "b",
            "inputs[0].from_task",
            9,
        ),
        (
            """
            workflow:
              id: w
              tasks:
                - id: b
                  agent: gap_assessment
                  inputs:
                    - {name: x, from_task: ghost}
            """,
            "input reads from unknown task 'ghost'",
            "b",
            "inputs[0].from_task",
            7,
        ),
        (
            """
            workflow:
              id: w
              tasks:
                - {id: a, agent: policy_analyzer}
                - id: b
                  agent: gap_assessment
                  inputs:
                    - name: all
                      sources: [a]
            """,
            "input reads from task 'a', which is not in depends_on",
            "b",
            "inputs[0].sources[0]",
            9,
        ),
        (
            """
            workflow:
              id: w
              tasks:
                - {id: a, agent: unknown_agent}
            """,
            "unknown handler 'unknown_agent'",
            "a",
            "agent",
            4,
        ),
        (
            """
            workflow:
              id: w
              owner: me
              tasks:
                - {id: a, agent: policy_analyzer}
            """,
            "unknown key 'owner'",
            None,
            "workflow.owner",
            3,
        ),
        (
            """
            workflow:
              id: w
              tasks:
                - {id: a, agent: policy_analyzer, retries: 3}
            """,
            "unknown key 'retries'",
            "a",
            "retries",
            4,
        ),
        (
            """
            workflow:
              id: w
              config:
                max_retries: lots
              tasks:
                - {id: a, agent: policy_analyzer}
            """,
            "max_retries must be a whole number",
            None,
            "workflow.config.max_retries",
            4,
        ),
        (
            """
            workflow:
              id: w
              config:
                timeout: eventually
              tasks:
                - {id: a, agent: policy_analyzer}
            """,
            "invalid duration 'eventually'",
            None,
            "workflow.config.timeout",
            4,
        ),
        (
            """
            workflow:
              id: w
              tasks:
                - id: a
                  agent: policy_analyzer
                  config:
                    timeout: later
            """,
            "invalid duration 'later'",
            "a",
            "config.timeout",
            7,
        ),
        (
            """
            workflow:
              id: w
              tasks:
                - id: a
                  agent: policy_analyzer
                  depends_on: [b]
                - id: b
                  agent: policy_analyzer
                  depends_on: [a]
            """,
            "cycle: a -> b -> a",
            "a",
            "depends_on[0]",
            6,
        ),
        (
            """
            extra: 1
            workflow:
              id: w
              tasks:
                - {id: a, agent: policy_analyzer}
            """,
            "unknown key 'extra'",
            None,
            "extra",
            1,
        ),
    ],
)
def test_agent_platform_errors(
    text: str, fragment: str, node: str | None, field: str | None, line: int | None
) -> None:
    issue = _find(_issues(text), fragment)
    assert (issue.node, issue.field, issue.line) == (node, field, line), str(issue)


def test_not_in_depends_on_is_reported_once() -> None:
    issues = _issues(
        """
        workflow:
          id: w
          tasks:
            - {id: a, agent: policy_analyzer}
            - id: b
              agent: gap_assessment
              inputs:
                - {name: x, from_task: a}
        """
    )
    assert len(issues) == 1
