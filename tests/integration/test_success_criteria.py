"""Success criteria through the engine: embedded (memory, SQLite) and scale-out alike.

The end of a run is decided by the same loop in both modes; in scale-out the nodes run on a
worker through Redis, and what the criteria read are the outputs that came back.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.facade import Engine
from orchestrion.engine.judging import CriteriaJudge
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings
from scaleout import engine_for, scaleout_engine, scaleout_settings

DORA = Path(__file__).resolve().parents[2] / "src/orchestrion/examples/reference"
DORA_FILE = DORA / "dora-compliance-assessment.yaml"
TEAMS_FILE = str(Path(__file__).resolve().parents[2] / "examples/teams.yaml")  # its teams


@function("crit_score", replace=True)
def crit_score(ctx: NodeContext, score: float) -> dict[str, Any]:
    return {"score": score, "gaps": [1, 2]}


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "scaleout":
        return "scaleout"  # PostgreSQL + Redis Streams with a worker (tests/scaleout.py)
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'sc.db'}"


@pytest.fixture
async def engine(database_url: str, request: pytest.FixtureRequest) -> AsyncIterator[Engine]:
    settings: Any = {"teams_file": TEAMS_FILE}
    if database_url != "scaleout":
        settings = load_settings(database_url=database_url, teams_file=TEAMS_FILE)
    async with engine_for(database_url, request, settings=settings) as engine:
        yield engine


def flow(*criteria: Any, on_failure: str = "none") -> dict[str, Any]:
    return {
        "name": "criteria",
        "on_failure": on_failure,
        "inputs": {"score": {"type": "number", "required": True}},
        "success_criteria": list(criteria),
        "dag": {
            "nodes": [
                {
                    "id": "analyse",
                    "handler": "python",
                    "config": {"function": "crit_score", "params": {"score": "{{ input.score }}"}},
                },
                {
                    "id": "skipped",
                    "handler": "noop",
                    "dependencies": ["analyse"],
                    "when": "analyse.output.score > 2",
                },
            ]
        },
    }


async def _criteria_events(engine: Engine, execution_id: str) -> list[dict[str, Any]]:
    events = await engine.reads.events(execution_id, types=["execution.criteria_evaluated"])
    return [e.data or {} for e in events]


async def test_passing_criteria_complete_the_run_and_are_reported(engine: Engine) -> None:
    definition = await engine.submit(
        flow(
            {"condition": "score >= 0.7"},
            {"condition": "{{ analyse.output.gaps | length == 2 }}"},  # heavy: a render thread
            {"condition": "workflow.duration < 600"},
            {"condition": "all_tasks_completed", "required": False},
        )
    )
    record = await engine.start_execution(definition, {"score": 0.9})
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.nodes["skipped"].state is NodeState.SKIPPED
    passed = [(c.condition, c.passed) for c in result.success_criteria]
    assert passed == [
        ("score >= 0.7", True),
        ("{{ analyse.output.gaps | length == 2 }}", True),
        ("workflow.duration < 600", True),
        ("all_tasks_completed", False),  # optional: reported, not deciding
    ]
    done, _gaps, _duration, completed = result.success_criteria
    assert done.value is True and done.detail == "evaluated to true; score = 0.9 (from analyse)"
    assert completed.detail == "not completed: skipped (skipped)"
    [event] = await _criteria_events(engine, record.id)
    assert event["passed"] is True
    assert [(c["condition"], c["passed"]) for c in event["criteria"]] == passed
    assert result.to_dict()["success_criteria"][0]["passed"] is True


async def test_a_failed_required_criterion_fails_the_run_naming_it(engine: Engine) -> None:
    definition = await engine.submit(
        flow({"condition": "score >= 0.7"}, {"condition": "no_such_field", "required": False})
    )
    record = await engine.start_execution(definition, {"score": 0.4})
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.FAILED
    assert result.error is not None
    assert result.error["category"] == "success_criteria"
    assert result.error["criteria"] == ["score >= 0.7"]
    assert result.error["message"] == (
        "success criterion 'score >= 0.7' failed: evaluated to false; score = 0.4 (from analyse)"
    )
    failed, missing = result.success_criteria
    assert (failed.passed, failed.value) == (False, False)
    assert (missing.passed, missing.detail) == (
        False,
        "no node's output has a field 'no_such_field'",
    )
    [event] = await _criteria_events(engine, record.id)
    assert event["passed"] is False


async def test_a_retry_judges_again(engine: Engine) -> None:
    definition = await engine.submit(flow({"condition": "score >= 0.7"}))
    record = await engine.start_execution(definition, {"score": 0.4})
    assert (await engine.wait(record.id, timeout=30)).status is ExecutionStatus.FAILED
    await engine.retry(record.id)
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.FAILED  # same outputs, same verdict
    assert len(await _criteria_events(engine, record.id)) == 2


@pytest.mark.parametrize(
    ("documents", "status"), [(["policy.pdf"], "completed"), (["memo.pdf"], "failed")]
)
async def test_the_dora_example_is_decided_by_its_criteria(
    engine: Engine, documents: list[str], status: str
) -> None:
    definition = await engine.submit(DORA_FILE)
    record = await engine.start_execution(definition, {"documents": documents})
    result = await engine.wait(record.id, timeout=30)
    tasks = [node for name, node in result.nodes.items() if not name.startswith("routing-")]
    assert all(node.state is NodeState.COMPLETED for node in tasks)
    assert result.status.value == status
    criteria = {c.condition: c for c in result.success_criteria}
    assert criteria["all_tasks_completed"].passed is True
    score = result.nodes["document_analysis"].output["compliance_score"]
    assert criteria["compliance_score >= 0.7"].passed is (score >= 0.7)
    assert criteria["no_critical_gaps"].passed is True and not criteria["no_critical_gaps"].required
    if status == "failed":
        assert result.error is not None and result.error["criteria"] == ["compliance_score >= 0.7"]


async def test_scale_out_api_sees_the_verdict_of_the_orchestrator(
    postgres_url: str, redis_server: str, redis_prefix: str
) -> None:
    settings = scaleout_settings(postgres_url, redis_server, redis_prefix)
    async with (
        scaleout_engine(postgres_url, redis_server, redis_prefix),
        Engine(settings=settings, drive=False) as api,
    ):
        definition = await api.submit(flow({"condition": "task.analyse.outputs.score > 0.5"}))
        record = await api.start_execution(definition, {"score": 0.2})
        result = await api.wait(record.id, timeout=30)
        assert result.status is ExecutionStatus.FAILED
        [criterion] = result.success_criteria
        assert (criterion.passed, criterion.detail) == (False, "evaluated to false")


async def test_a_verdict_lost_with_its_process_is_asked_again_on_recovery(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"sqlite:///{tmp_path / 'lost.db'}"
    with monkeypatch.context() as patched:
        # The process stops before it answers: the request is never evaluated.
        patched.setattr(CriteriaJudge, "now", lambda self, live, command: None)
        patched.setattr(CriteriaJudge, "later", lambda self, live, command: None)
        async with Engine(url) as first:
            definition = await first.submit(flow({"condition": "score >= 0.7"}))
            record = await first.start_execution(definition, {"score": 0.9})
            for _ in range(250):  # until the last node is final
                stuck = await first.result(record.id)
                if stuck.nodes["skipped"].state is NodeState.SKIPPED:
                    break
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.1)  # nothing else comes: the machine waits for a verdict
            stuck = await first.result(record.id)
            assert stuck.status is ExecutionStatus.RUNNING
            assert stuck.nodes["analyse"].state is NodeState.COMPLETED
            assert [c.passed for c in stuck.success_criteria] == [None]
    async with Engine(url) as second:
        result = await second.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED
    assert [c.passed for c in result.success_criteria] == [True]


async def test_a_criterion_reading_a_skipped_node_fails_saying_it_did_not_complete(
    engine: Engine,
) -> None:
    definition = await engine.submit(
        flow(
            {"condition": "skipped.output.ok == true", "required": False},
            {"condition": "nodes['skipped'].output.ok == true", "required": False},
            {"condition": "task.skipped.outputs.ok == true", "required": False},
        )
    )
    record = await engine.start_execution(definition, {"score": 0.9})
    result = await engine.wait(record.id, timeout=30)
    assert result.nodes["skipped"].state is NodeState.SKIPPED
    reason = "task 'skipped' did not complete: it has no outputs to read"
    assert [(c.passed, c.detail) for c in result.success_criteria] == [(False, reason)] * 3
