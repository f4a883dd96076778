"""Demo agents for reference 004's DORA compliance workflow.

``policy_analyzer``, ``gap_assessment``, ``risk_calculator``, ``implementation_planner`` and
``report_generator`` stand in for real AI agents: each returns deterministic, plausibly shaped
outputs named as reference 004 declares them, computed from its inputs, so the workflow runs
end to end (routing conditions and success criteria included) without any model or service.
Replace them by registering real handlers under the same names.

The dialect converter passes the task's resolved ``inputs`` (name -> value), its ``outputs``
declaration and any other task config keys; unknown keys are accepted.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from orchestrion.errors import ErrorCategory, PermanentNodeError
from orchestrion.handlers.base import HandlerSpec, NodeContext

__all__ = ["SPECS", "AgentConfig", "agent_names"]

# The five DORA pillars, with the article they live in.
_AREAS: tuple[tuple[str, str], ...] = (
    ("ict_risk_management", "Art. 5-16"),
    ("incident_reporting", "Art. 17-23"),
    ("resilience_testing", "Art. 24-27"),
    ("third_party_risk", "Art. 28-44"),
    ("information_sharing", "Art. 45"),
)
_SEVERITY_COST = {"critical": 400_000, "high": 150_000, "medium": 60_000, "low": 15_000}
_SEVERITY_WEEKS = {"critical": 6, "high": 4, "medium": 3, "low": 1}
_SEVERITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}


class AgentConfig(BaseModel):
    """Config of a demo agent: resolved ``inputs`` and the ``outputs`` declaration."""

    model_config = ConfigDict(extra="allow")

    inputs: dict[str, Any] = Field(
        default_factory=dict, description="the task's inputs, resolved from earlier tasks"
    )
    outputs: list[Any] = Field(default_factory=list, description="the outputs the task declares")


def _unit(*parts: Any) -> float:
    """A stable number in [0, 1) from the given values."""
    seed = json.dumps(parts, sort_keys=True, default=str).encode("utf-8")
    return int.from_bytes(hashlib.sha256(seed).digest()[:4], "big") / 2**32


def _upstream(ctx: NodeContext, config: AgentConfig, name: str, field: str) -> Any:
    """Input ``name``, else ``field`` of the first dependency output that has it."""
    if name in config.inputs:
        return config.inputs[name]
    for dep in ctx.dependencies:
        output = ctx.outputs.get(dep)
        if isinstance(output, dict) and field in output:
            return output[field]
    return None


def policy_analyzer(ctx: NodeContext, config: AgentConfig) -> dict[str, Any]:
    """Coverage per DORA pillar from ``documents``; the score is their mean."""
    documents = config.inputs.get("documents") or []
    if not isinstance(documents, list):
        documents = [documents]
    analysis_type = str(config.inputs.get("analysis_type") or "comprehensive")
    findings: list[dict[str, Any]] = []
    for area, article in _AREAS:
        # More documents cover more of the regulation; the hash keeps areas distinct. With no
        # document at all nothing is covered, beyond what people know without one.
        base = 0.55 + 0.08 * len(documents) if documents else 0.0
        coverage = min(0.98, base + 0.25 * _unit(area, documents))
        status = "compliant" if coverage >= 0.8 else "partial" if coverage >= 0.6 else "missing"
        findings.append(
            {"area": area, "article": article, "coverage": round(coverage, 3), "status": status}
        )
    score = sum(f["coverage"] for f in findings) / len(findings)
    return {
        "analysis_results": {
            "analysis_type": analysis_type,
            "documents_analyzed": len(documents),
            "findings": findings,
        },
        "compliance_score": round(score, 3),
    }


def gap_assessment(ctx: NodeContext, config: AgentConfig) -> dict[str, Any]:
    """One gap per finding that is not compliant, graded by coverage."""
    analysis = _upstream(ctx, config, "analysis_results", "analysis_results") or {}
    findings = analysis.get("findings", []) if isinstance(analysis, dict) else []
    gaps: list[dict[str, Any]] = []
    for finding in findings:
        if not isinstance(finding, dict) or finding.get("status") == "compliant":
            continue
        coverage = float(finding.get("coverage", 0.0))
        severity = (
            "critical"
            if coverage < 0.3
            else "high"
            if coverage < 0.6
            else "medium"
            if coverage < 0.7
            else "low"
        )
        gaps.append(
            {
                "id": f"GAP-{len(gaps) + 1:03d}",
                "area": finding.get("area", "unknown"),
                "article": finding.get("article"),
                "severity": severity,
                "description": f"{finding.get('area', 'area')} is {finding.get('status')} "
                f"(coverage {coverage:.0%})",
            }
        )
    by_severity = {level: sum(g["severity"] == level for g in gaps) for level in _SEVERITY_COST}
    overall = (
        "high" if by_severity["high"] or by_severity["critical"] else ("medium" if gaps else "low")
    )
    return {
        "gaps_identified": gaps,
        "risk_assessment": {
            "overall_risk": overall,
            "gap_count": len(gaps),
            "critical_gaps": by_severity["critical"],
            "by_severity": by_severity,
        },
        # Not declared by the reference: read by its optional `no_critical_gaps` criterion.
        "no_critical_gaps": by_severity["critical"] == 0,
    }


def risk_calculator(ctx: NodeContext, config: AgentConfig) -> dict[str, Any]:
    """A cost per gap by severity, scaled by ``financial_data.annual_revenue``."""
    gaps = _upstream(ctx, config, "gaps_data", "gaps_identified") or []
    financial = config.inputs.get("financial_data")
    revenue = 50_000_000.0
    if isinstance(financial, dict) and isinstance(financial.get("annual_revenue"), int | float):
        revenue = float(financial["annual_revenue"])
    scale = max(0.1, revenue / 50_000_000.0)  # exposure grows with the size of the business
    gaps = [g for g in gaps if isinstance(g, dict)] if isinstance(gaps, list) else []
    impact = 0.0
    by_area: dict[str, float] = {}
    for gap in gaps:
        cost = _SEVERITY_COST.get(str(gap.get("severity")), 0) * scale
        impact += cost
        area = str(gap.get("area"))
        by_area[area] = by_area.get(area, 0.0) + round(cost, 2)
    count = len(gaps)
    return {
        "risk_metrics": {
            "gap_count": count,
            "exposure_by_area": by_area,
            "probability_of_incident": round(min(0.95, 0.05 + 0.1 * count), 2),
            "risk_level": "high" if impact > 500_000 else "medium" if impact > 100_000 else "low",
        },
        "financial_impact": round(impact, 2),
    }


def implementation_planner(ctx: NodeContext, config: AgentConfig) -> dict[str, Any]:
    """Gaps in severity order, one after the other, with a week-based timeline."""
    gaps = _upstream(ctx, config, "gaps_data", "gaps_identified") or []
    risk = _upstream(ctx, config, "risk_data", "risk_metrics") or {}
    ordered = sorted(
        (g for g in gaps if isinstance(g, dict)) if isinstance(gaps, list) else [],
        key=lambda g: (_SEVERITY_RANK.get(str(g.get("severity")), 9), str(g.get("id"))),
    )
    plan: list[dict[str, Any]] = []
    milestones: list[dict[str, Any]] = []
    week = 1
    for step, gap in enumerate(ordered, start=1):
        weeks = _SEVERITY_WEEKS.get(str(gap.get("severity")), 2)
        plan.append(
            {
                "step": step,
                "gap_id": gap.get("id"),
                "action": f"Remediate {gap.get('area')}: policy update, controls, evidence",
                "owner": "compliance_office" if step % 2 else "it_risk",
                "priority": gap.get("severity"),
                "start_week": week,
                "duration_weeks": weeks,
            }
        )
        week += weeks
        milestones.append({"week": week - 1, "done": gap.get("id")})
    total = week - 1
    return {
        "implementation_plan": plan,
        "timeline": {
            "total_weeks": total,
            "milestones": milestones,
            "risk_level": risk.get("risk_level") if isinstance(risk, dict) else None,
        },
    }


def report_generator(ctx: NodeContext, config: AgentConfig) -> dict[str, Any]:
    """A Markdown report and a one-sentence summary of everything upstream."""
    results = config.inputs.get("all_results")
    if not isinstance(results, dict):
        results = {dep: ctx.outputs.get(dep) for dep in ctx.dependencies}
    merged: dict[str, Any] = {}
    for output in results.values():
        if isinstance(output, dict):
            merged.update(output)
    score = merged.get("compliance_score")
    gaps = merged.get("gaps_identified") or []
    impact = merged.get("financial_impact")
    weeks = (merged.get("timeline") or {}).get("total_weeks")
    score_text = f"{score:.0%}" if isinstance(score, int | float) else "n/a"
    impact_text = f"EUR {impact:,.0f}" if isinstance(impact, int | float) else "n/a"
    lines = [
        "# DORA Compliance Report (demo agent output)",
        "",
        f"Compliance score: {score_text}",
        f"Gaps identified: {len(gaps)}",
        f"Estimated financial impact: {impact_text}",
        f"Remediation timeline: {weeks if weeks is not None else 'n/a'} weeks",
        "",
        "## Gaps",
    ]
    lines += [f"- {g.get('id')} [{g.get('severity')}] {g.get('description')}" for g in gaps]
    if not gaps:
        lines.append("- none")
    summary = (
        f"Compliance score {score_text} with {len(gaps)} gap(s); estimated exposure "
        f"{impact_text}; remediation planned over {weeks if weeks is not None else 'n/a'} weeks."
    )
    return {"compliance_report": "\n".join(lines) + "\n", "executive_summary": summary}


_Agent = Callable[[NodeContext, AgentConfig], dict[str, Any]]


def _declared(outputs: list[Any]) -> list[str]:
    names = []
    for item in outputs:
        name = item.get("name") if isinstance(item, dict) else item
        if isinstance(name, str):
            names.append(name)
    return names


def _spec(name: str, agent: _Agent, description: str) -> HandlerSpec:
    async def run(ctx: NodeContext, config: AgentConfig) -> dict[str, Any]:
        result = agent(ctx, config)
        missing = [out for out in _declared(config.outputs) if out not in result]
        if missing:
            raise PermanentNodeError(
                f"demo agent '{name}' does not produce declared output(s) {missing} "
                f"(it produces {sorted(result)})",
                category=ErrorCategory.CONFIG,
            )
        return result

    return HandlerSpec(
        name=name,
        run=run,
        config_model=AgentConfig,
        description=f"DEMO AGENT (deterministic, no AI): {description}",
    )


SPECS: tuple[HandlerSpec, ...] = (
    _spec(
        "policy_analyzer",
        policy_analyzer,
        "scores policy documents against the DORA pillars -> analysis_results, compliance_score.",
    ),
    _spec(
        "gap_assessment",
        gap_assessment,
        "lists non-compliant areas -> gaps_identified, risk_assessment.",
    ),
    _spec(
        "risk_calculator",
        risk_calculator,
        "prices the gaps -> risk_metrics, financial_impact.",
    ),
    _spec(
        "implementation_planner",
        implementation_planner,
        "orders remediation by severity -> implementation_plan, timeline.",
    ),
    _spec(
        "report_generator",
        report_generator,
        "summarises all results -> compliance_report, executive_summary.",
    ),
)


def agent_names() -> list[str]:
    """The names of the demo agents."""
    return [spec.name for spec in SPECS]
