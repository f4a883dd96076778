"""The demo agents of reference 004, run in the workflow's order."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from node_context import node_context
from orchestrion.errors import PermanentNodeError
from orchestrion.handlers.agents import SPECS, AgentConfig, agent_names
from orchestrion.handlers.base import HandlerSpec, NodeContext

SPEC_BY_NAME = {spec.name: spec for spec in SPECS}

# The outputs reference 004 declares for each task.
DECLARED = {
    "policy_analyzer": ["analysis_results", "compliance_score"],
    "gap_assessment": ["gaps_identified", "risk_assessment"],
    "risk_calculator": ["risk_metrics", "financial_impact"],
    "implementation_planner": ["implementation_plan", "timeline"],
    "report_generator": ["compliance_report", "executive_summary"],
}


def make_ctx(**overrides: Any) -> NodeContext:
    return node_context("agent", **overrides)


async def run_agent(name: str, inputs: dict[str, Any], **ctx: Any) -> dict[str, Any]:
    spec = SPEC_BY_NAME[name]
    assert spec.config_model is not None
    config = spec.config_model.model_validate(
        {
            "inputs": inputs,
            "outputs": [{"name": out, "type": "structured_data"} for out in DECLARED[name]],
            # What the dialect converter may carry over from reference 004's task config.
            "timeout": 900,
            "priority": "high",
            "resources": {"cpu": "2", "memory": "4Gi", "gpu": False},
        }
    )
    result: dict[str, Any] = await spec.run(make_ctx(node_id=name, **ctx), config)
    return result


async def run_workflow(documents: list[str]) -> dict[str, dict[str, Any]]:
    analysis = await run_agent(
        "policy_analyzer", {"documents": documents, "analysis_type": "comprehensive"}
    )
    gaps = await run_agent("gap_assessment", {"analysis_results": analysis["analysis_results"]})
    risk = await run_agent(
        "risk_calculator",
        {"gaps_data": gaps["gaps_identified"], "financial_data": {"annual_revenue": 80e6}},
    )
    plan = await run_agent(
        "implementation_planner",
        {"gaps_data": gaps["gaps_identified"], "risk_data": risk["risk_metrics"]},
    )
    everything = {
        "document_analysis": analysis,
        "gap_identification": gaps,
        "risk_calculation": risk,
        "implementation_planning": plan,
    }
    report = await run_agent("report_generator", {"all_results": everything})
    return {**everything, "report_generation": report}


def test_all_agents_registered_as_demo() -> None:
    assert sorted(agent_names()) == sorted(DECLARED)
    for spec in SPECS:
        assert isinstance(spec, HandlerSpec)
        assert "DEMO AGENT" in spec.description


async def test_reference_004_workflow_outputs_have_declared_shapes() -> None:
    results = await run_workflow(["ict_policy.pdf", "incident_process.docx", "bcp.pdf"])
    analysis = results["document_analysis"]
    assert 0 < analysis["compliance_score"] <= 1
    assert analysis["analysis_results"]["documents_analyzed"] == 3
    assert len(analysis["analysis_results"]["findings"]) == 5

    gaps = results["gap_identification"]
    assert isinstance(gaps["gaps_identified"], list)
    assert gaps["risk_assessment"]["gap_count"] == len(gaps["gaps_identified"])

    risk = results["risk_calculation"]
    assert isinstance(risk["financial_impact"], float)
    assert risk["risk_metrics"]["gap_count"] == len(gaps["gaps_identified"])

    plan = results["implementation_planning"]
    assert len(plan["implementation_plan"]) == len(gaps["gaps_identified"])
    assert plan["timeline"]["total_weeks"] == sum(
        step["duration_weeks"] for step in plan["implementation_plan"]
    )

    report = results["report_generation"]
    assert report["compliance_report"].startswith("# DORA Compliance Report")
    assert "Compliance score" in report["executive_summary"]


async def test_agents_are_deterministic() -> None:
    docs = ["a.pdf", "b.pdf"]
    assert await run_workflow(docs) == await run_workflow(docs)


async def test_few_documents_mean_lower_score_and_more_gaps() -> None:
    thin = await run_workflow([])
    rich = await run_workflow(["1", "2", "3", "4", "5"])
    assert (
        thin["document_analysis"]["compliance_score"]
        < rich["document_analysis"]["compliance_score"]
    )
    assert len(thin["gap_identification"]["gaps_identified"]) >= len(
        rich["gap_identification"]["gaps_identified"]
    )
    assert thin["risk_calculation"]["financial_impact"] > 0


async def test_gaps_are_planned_by_severity() -> None:
    gaps = [
        {"id": "GAP-001", "area": "x", "severity": "low"},
        {"id": "GAP-002", "area": "y", "severity": "high"},
    ]
    plan = await run_agent("implementation_planner", {"gaps_data": gaps, "risk_data": {}})
    assert [step["gap_id"] for step in plan["implementation_plan"]] == ["GAP-002", "GAP-001"]
    risk = await run_agent("risk_calculator", {"gaps_data": gaps})
    assert risk["financial_impact"] == 165_000.0


async def test_agents_fall_back_to_dependency_outputs() -> None:
    analysis = await run_agent("policy_analyzer", {"documents": []})
    gaps = await run_agent(
        "gap_assessment",
        {},
        dependencies=("document_analysis",),
        outputs={"document_analysis": analysis},
    )
    expected = await run_agent("gap_assessment", {"analysis_results": analysis["analysis_results"]})
    assert gaps == expected
    report = await run_agent(
        "report_generator",
        {},
        dependencies=("document_analysis", "gap_identification"),
        outputs={"document_analysis": analysis, "gap_identification": gaps},
    )
    assert f"Gaps identified: {len(gaps['gaps_identified'])}" in report["compliance_report"]


async def test_undeclared_output_is_a_permanent_error() -> None:
    spec = SPEC_BY_NAME["risk_calculator"]
    assert spec.config_model is not None
    config = spec.config_model.model_validate({"outputs": [{"name": "risk_score"}]})
    with pytest.raises(PermanentNodeError, match="risk_score"):
        await spec.run(make_ctx(), config)


def test_agent_config_accepts_extra_keys() -> None:
    config = AgentConfig.model_validate({"inputs": {"a": 1}, "anything": {"b": 2}})
    assert isinstance(config, BaseModel)
    assert config.model_extra == {"anything": {"b": 2}}
