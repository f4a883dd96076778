"""The reference documents' example workflows load and validate as written; graphs render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrion.definition.graph import to_dot, to_mermaid
from orchestrion.definition.model import WorkflowSpec
from orchestrion.errors import DefinitionError
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.loading import load_definition
from orchestrion.handlers.registry import HandlerRegistry

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "reference"

AGENTS = (
    "policy_analyzer",
    "gap_assessment",
    "risk_calculator",
    "implementation_planner",
    "report_generator",
)


async def _run(ctx: NodeContext, config: Any) -> Any:
    return None


def _registry(*, without: str | None = None) -> HandlerRegistry:
    specs = [
        HandlerSpec("input", _run),
        HandlerSpec("output", _run),
        HandlerSpec("http", _run, aliases=("call_external_service",)),
        HandlerSpec("llm", _run, aliases=("llm_service", "call_llm_service")),
        HandlerSpec("python", _run),
        HandlerSpec("noop", _run),
        *(HandlerSpec(name, _run) for name in AGENTS),
    ]
    return HandlerRegistry(spec for spec in specs if spec.name != without)


REGISTRY = _registry()

EXPECTED = {
    "reliable_workflow.yaml": ("swarmlite", "yaml", "reliable_sample", 4),
    "parallel_api_fetcher.json": ("canonical", "json", "Parallel API Fetcher", 4),
    "linear_processing.json": ("canonical", "json", "Linear Processing", 3),
    "parallel_processing.json": ("canonical", "json", "Parallel Processing", 5),
    "llm_analysis.json": ("canonical", "json", "LLM Analysis", 4),
    "simple_llm_workflow.json": ("canonical", "json", "Simple LLM Workflow", 3),
    "dora-compliance-assessment.yaml": ("agent_platform", "yaml", "DORA Compliance Assessment", 5),
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.iterdir()) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_loads(name: str) -> None:
    dialect, source_format, title, count = EXPECTED[name]
    loaded = load_definition(EXAMPLES / name, registry=REGISTRY)
    assert (loaded.dialect, loaded.source_format, loaded.spec.name) == (
        dialect,
        source_format,
        title,
    )
    assert len(loaded.spec.dag.nodes) == count
    assert loaded.source_text == (EXAMPLES / name).read_text(encoding="utf-8")
    for node in loaded.spec.dag.nodes:
        assert node.handler in REGISTRY
    # The canonical form of any dialect loads again as canonical, unchanged.
    again = load_definition(
        loaded.spec.model_dump(mode="json", exclude_defaults=True), registry=REGISTRY
    )
    assert again.dialect == "canonical"
    assert again.spec == loaded.spec


def test_reliable_workflow_conversion() -> None:
    spec = load_definition(EXAMPLES / "reliable_workflow.yaml", registry=REGISTRY).spec
    ids = [node.id for node in spec.dag.nodes]
    assert ids == ["initialize_data", "process_data", "validate_output", "finalize_results"]
    assert [node.dependencies for node in spec.dag.nodes] == [
        (),
        ("initialize_data",),
        ("process_data",),
        ("validate_output",),
    ]
    process = spec.node("process_data")
    assert process.config == {
        "function": "clean_dataframe",
        "params": {"columns": ["id", "value", "status"]},
    }
    assert process.compensate is not None
    assert process.compensate.config == {"function": "rollback_process"}
    retry = spec.defaults.retry
    assert retry is not None
    assert (retry.max_attempts, retry.initial_delay, retry.multiplier) == (2, 1.0, 1.0)


def test_llm_analysis_template_reads_its_parent() -> None:
    spec = load_definition(EXAMPLES / "llm_analysis.json", registry=REGISTRY).spec
    assert spec.node("analyze").config["prompt"] == (
        "Analyze this data: {{ fetch_data.output.response }}"
    )


def test_dora_example() -> None:
    loaded = load_definition(EXAMPLES / "dora-compliance-assessment.yaml", registry=REGISTRY)
    spec = loaded.spec
    assert loaded.warnings == []  # every lifecycle section is enforced
    assert [node.handler for node in spec.dag.nodes] == list(AGENTS)
    assert spec.metadata["id"] == "dora-compliance-assessment"
    assert spec.version == "1.0.0"
    assert spec.timeout == 3600
    assert spec.defaults.retry is not None
    assert spec.defaults.retry.max_attempts == 4
    assert len(spec.triggers) == 3
    assert len(spec.routing) == 3
    assert len(spec.error_handling) == 3
    assert len(spec.success_criteria) == 3
    assert spec.inputs["documents"].required
    assert spec.inputs["analysis_type"].default == "comprehensive"
    planning = spec.node("implementation_planning")
    assert planning.config["inputs"] == {
        "gaps_data": "{{ gap_identification.output.gaps_identified }}",
        "risk_data": "{{ risk_calculation.output.risk_metrics }}",
    }
    assert (planning.timeout, planning.priority) == (1200, 50)


def test_dora_unregistered_agent_is_named() -> None:
    with pytest.raises(DefinitionError) as info:
        load_definition(
            EXAMPLES / "dora-compliance-assessment.yaml",
            registry=_registry(without="report_generator"),
        )
    (issue,) = info.value.issues
    assert "unknown handler 'report_generator'" in issue.message
    assert (issue.node, issue.field) == ("report_generation", "agent")
    text = (EXAMPLES / "dora-compliance-assessment.yaml").read_text(encoding="utf-8")
    assert issue.line is not None
    assert 'agent: "report_generator"' in text.splitlines()[issue.line - 1]


def test_reference_000_unknown_function_type_is_named() -> None:
    with pytest.raises(DefinitionError) as info:
        load_definition(EXAMPLES / "reliable_workflow.yaml", registry=_registry(without="python"))
    # four tasks plus four compensation handlers use the python handler
    assert len(info.value.issues) == 8
    assert all("unknown handler 'python'" in issue.message for issue in info.value.issues)
    fields = {issue.field for issue in info.value.issues}
    assert fields == {
        "type",
        *(
            f"compensation_handlers.{node}"
            for node in ("initialize_data", "process_data", "validate_output", "finalize_results")
        ),
    }


# ---------------------------------------------------------------- graphs


def test_mermaid_of_fan_out() -> None:
    spec = load_definition(EXAMPLES / "parallel_processing.json", registry=REGISTRY).spec
    text = to_mermaid(spec)
    assert text.startswith("flowchart TD\n")
    assert 'n0["input<br/><i>input</i>"]' in text
    assert 'n1["task_b<br/><i>call_external_service</i>"]' in text
    edges = [line.strip() for line in text.splitlines() if "-->" in line]
    assert edges == ["n0 --> n1", "n0 --> n2", "n0 --> n3", "n1 --> n4", "n2 --> n4", "n3 --> n4"]


def test_dot_of_fan_out() -> None:
    spec = load_definition(EXAMPLES / "parallel_processing.json", registry=REGISTRY).spec
    text = to_dot(spec)
    assert text.startswith('digraph "Parallel Processing" {')
    assert '"task_c" [label="task_c\\n(call_external_service)"];' in text
    assert '"task_d" -> "output";' in text
    assert text.rstrip().endswith("}")


def test_graphs_quote_awkward_names() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": 'say "hi"',
            "dag": {
                "nodes": [
                    {"id": "get-data", "handler": "noop"},
                    {"id": "end", "handler": 'odd"<x>', "dependencies": ["get-data"]},
                ]
            },
        }
    )
    dot = to_dot(spec)
    assert 'digraph "say \\"hi\\"" {' in dot
    assert '"get-data" -> "end";' in dot
    mermaid = to_mermaid(spec)
    assert "odd#quot;#lt;x#gt;" in mermaid
    assert "n0 --> n1" in mermaid
