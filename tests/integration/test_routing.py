"""Routing and error handling rules through the engine: embedded (memory, SQLite) and
scale-out (PostgreSQL + Redis Streams with a worker) alike.

The DORA example of reference 004 as written: a run without documents escalates to the
compliance officer, waits for the CFO or the CRO (nobody else may decide), and its success
criteria then decide it; a run with documents fires nothing. Rules on ``workflow.duration``
alert once while the run goes on; error handling retries, queues or halts by error type.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.notices import Notice
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.engine.deciders import Decider
from orchestrion.engine.facade import Engine
from orchestrion.errors import (
    DecisionRefused,
    DefinitionError,
    PermanentNodeError,
    TransientNodeError,
)
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.settings import load_settings
from scaleout import scaleout_engine

ROOT = Path(__file__).resolve().parents[2]
DORA_FILE = ROOT / "examples/reference/dora-compliance-assessment.yaml"
TEAMS_FILE = ROOT / "examples/teams.yaml"
TEAMS = {
    "ops": {"members": ["olga"], "notify": ["mailto:ops@example.com"]},
    "data": {"members": ["dan"], "notify": ["https://hooks.example.com/data"]},
}


class Collected:
    """A notice sink that keeps what it is given."""

    def __init__(self) -> None:
        self.notices: list[Notice] = []

    async def deliver(self, notices: Sequence[Notice]) -> None:
        self.notices.extend(notices)


_calls: dict[str, int] = {}


@function("rt_flaky", replace=True)
def rt_flaky(ctx: NodeContext, key: str, category: str, fails: int) -> dict[str, Any]:
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] <= fails:
        raise TransientNodeError(f"{category} #{_calls[key]}", category=category)
    return {"calls": _calls[key]}


@function("rt_invalid", replace=True)
def rt_invalid(ctx: NodeContext) -> None:
    raise PermanentNodeError("field 'amount' is not a number", category="validation")


@pytest.fixture(params=["memory", "sqlite", "scaleout"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def routed(
    kind: str, request: pytest.FixtureRequest, sink: Collected
) -> AsyncIterator[Engine]:
    teams = {"teams_file": str(TEAMS_FILE), "teams": TEAMS}
    if kind == "scaleout":
        postgres_url = request.getfixturevalue("postgres_url")
        redis_url = request.getfixturevalue("redis_server")
        prefix = request.getfixturevalue("redis_prefix")
        async with scaleout_engine(
            postgres_url, redis_url, prefix, settings=teams, notice_sinks=[sink]
        ) as engine:
            yield engine
        return
    tmp: Path = request.getfixturevalue("tmp_path")
    url = "memory://" if kind == "memory" else f"sqlite:///{tmp / 'routing.db'}"
    settings = load_settings(database_url=url, **teams)
    async with Engine(settings=settings, notice_sinks=[sink]) as engine:
        yield engine


@pytest.fixture
async def sink() -> Collected:
    return Collected()


@pytest.fixture
async def engine(
    kind: str, request: pytest.FixtureRequest, sink: Collected
) -> AsyncIterator[Engine]:
    async with routed(kind, request, sink) as running:
        yield running


async def until(check: Any, timeout: float = 20.0) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await check()
        if value:
            return value
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def _node(engine: Engine, execution_id: str, node: str) -> Any:
    result = await engine.result(execution_id)
    return result.nodes[node]


async def _journal(engine: Engine, execution_id: str, kind: str) -> list[dict[str, Any]]:
    events = await engine.reads.events(execution_id, types=[kind])
    return [e.data or {} for e in events]


async def _waiting_for(engine: Engine, execution_id: str, node: str) -> bool:
    run = await _node(engine, execution_id, node)
    return run.state is NodeState.WAITING and run.wait_reason == "approval"


async def test_dora_without_documents_escalates_waits_for_cfo_or_cro_then_its_criteria_decide(
    engine: Engine, sink: Collected
) -> None:
    record = await engine.start_execution(DORA_FILE, {"documents": []})
    await until(lambda: _waiting_for(engine, record.id, "routing-2"))
    result = await engine.result(record.id)
    assert result.status is ExecutionStatus.WAITING
    escalated = result.nodes["routing-1"]
    assert escalated.state is NodeState.COMPLETED and escalated.output["fired"] is True
    # Nothing after risk_calculation runs before the decision.
    assert result.nodes["implementation_planning"].state is NodeState.PENDING
    notices = await until(lambda: _journal_notices(engine, record.id, 2))
    assert [(n["kind"], n["teams"], n["node"]) for n in notices] == [
        ("escalation", ["compliance_officer"], "routing-1"),
        ("approval_required", ["cfo", "cro"], "routing-2"),
    ]
    await until(lambda: _delivered(sink, 2))
    escalation, approval = sink.notices
    assert escalation.addresses == ("mailto:compliance@example.com",)
    assert escalation.members == ("carol",)
    assert escalation.key == f"{record.id}:routing-1:1:escalation"
    assert approval.members == ("alice", "bob")
    assert "financial_impact > 1000000" in approval.message
    for who in (Decider("k-carol", "admin", "carol"), Decider("k-olga", "operator", "olga")):
        with pytest.raises(DecisionRefused, match="may be decided only by cfo, cro"):
            await engine.decide(record.id, "routing-2", approved=True, decider=who)
    await engine.decide(
        record.id,
        "routing-2",
        approved=True,
        comment="budgeted",
        decider=Decider("k2", "operator", "bob"),
    )
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.FAILED  # its required criterion does not hold
    assert result.error is not None and result.error["category"] == "success_criteria"
    assert result.nodes["routing-2"].output["decided_by"] == "bob"
    assert result.nodes["report_generation"].state is NodeState.COMPLETED
    assert result.nodes["routing-3"].state is NodeState.SKIPPED  # never two hours
    assert result.nodes["routing-3"].wait_reason == "run_ended"
    criteria = {c.condition: c.passed for c in result.success_criteria}
    assert criteria == {
        "all_tasks_completed": True,  # the rules' nodes are not tasks
        "compliance_score >= 0.7": False,
        "no_critical_gaps": False,
    }
    assert len(await _journal(engine, record.id, "execution.notice")) == 2  # none doubled
    shown = [(n["kind"], n["node"], n["delivered"]) for n in result.notices]
    assert shown == [("escalation", "routing-1", True), ("approval_required", "routing-2", True)]


async def _journal_notices(engine: Engine, execution_id: str, count: int) -> Any:
    found = await _journal(engine, execution_id, "execution.notice")
    return found if len(found) >= count else None


async def _delivered(sink: Collected, count: int) -> bool:
    return len(sink.notices) >= count


async def test_a_rejection_by_an_approver_fails_the_run_and_skips_what_it_gated(
    engine: Engine,
) -> None:
    record = await engine.start_execution(DORA_FILE, {"documents": []})
    await until(lambda: _waiting_for(engine, record.id, "routing-2"))
    await engine.decide(
        record.id,
        "routing-2",
        approved=False,
        comment="too costly",
        decider=Decider("k1", "operator", "alice"),
    )
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.FAILED
    assert result.nodes["routing-2"].state is NodeState.FAILED
    assert "rejected by alice" in result.nodes["routing-2"].error["message"]
    assert result.nodes["implementation_planning"].state is NodeState.SKIPPED


async def test_dora_with_documents_fires_no_rule_and_completes(
    engine: Engine, sink: Collected
) -> None:
    record = await engine.start_execution(DORA_FILE, {"documents": ["policy.pdf", "ict-risk.pdf"]})
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.nodes["routing-1"].output == {"fired": False, "rule": 1, "action": "escalate"}
    assert result.nodes["routing-2"].output["fired"] is False
    assert set(result.result) == {"report_generation"}  # the rules' nodes are no result
    assert await _journal(engine, record.id, "execution.notice") == []
    assert sink.notices == []


def _flow(**extra: Any) -> dict[str, Any]:
    return {
        "name": "routed",
        "dag": {"nodes": [{"id": "slow", "handler": "noop", "config": {"sleep": 1.0}}]},
        **extra,
    }


async def test_a_rule_on_the_run_alerts_once_when_the_duration_passes(
    engine: Engine, sink: Collected
) -> None:
    flow = _flow(
        routing=[
            {"condition": "workflow.duration > 0.3", "action": "alert", "recipients": ["ops"],
             "message": "slow run"},
            {"condition": "workflow.duration > 600", "action": "alert", "recipients": ["ops"]},
        ]
    )  # fmt: skip
    record = await engine.start_execution(flow)
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.COMPLETED, result.error
    assert result.nodes["routing-1"].output["fired"] is True
    assert result.nodes["routing-2"].state is NodeState.SKIPPED
    [notice] = await _journal(engine, record.id, "execution.notice")
    assert (notice["kind"], notice["message"], notice["teams"]) == ("alert", "slow run", ["ops"])
    assert notice["data"]["duration"] >= 0.3
    await until(lambda: _delivered(sink, 1))
    assert [n.addresses for n in sink.notices] == [("mailto:ops@example.com",)]


async def test_error_handling_queues_retries_and_halts_by_error_type(
    engine: Engine, sink: Collected, kind: str
) -> None:
    key = f"{kind}-{id(engine)}"
    flow = {
        "name": "errors",
        "on_failure": "none",
        "error_handling": [
            {"error_type": "resource_unavailable", "action": "queue", "initial_delay": 0.05,
             "max_wait": 0.1},
            {"error_type": "timeout", "action": "retry", "max_attempts": 2, "initial_delay": 0.01,
             "backoff": "fixed"},
        ],
        "dag": {
            "nodes": [
                # Four connection failures: more than the default policy's 3 attempts allow.
                {"id": "fetch", "handler": "python", "config": {"function": "rt_flaky",
                 "params": {"key": f"{key}-fetch", "category": "connection", "fails": 4}}},
                {"id": "slowpoke", "handler": "python", "config": {"function": "rt_flaky",
                 "params": {"key": f"{key}-slow", "category": "timeout", "fails": 5}}},
            ]
        },
    }  # fmt: skip
    record = await engine.start_execution(flow)
    result = await engine.wait(record.id, timeout=30)
    assert result.nodes["fetch"].state is NodeState.COMPLETED
    assert result.nodes["fetch"].attempt == 5  # queued, not failed
    assert result.nodes["slowpoke"].state is NodeState.FAILED
    assert result.nodes["slowpoke"].attempt == 2  # the rule's attempts, not the default 3
    retried = await _journal(engine, record.id, "node.retry_scheduled")
    assert {r["error_handling"]["action"] for r in retried} == {"queue", "retry"}

    halt = {
        "error_type": "validation_error",
        "action": "halt",
        "notify": ["data"],
        "tasks": ["check"],
    }
    halting = {
        **flow,
        "error_handling": [*flow["error_handling"], halt],
        "dag": {
            "nodes": [
                {"id": "check", "handler": "python", "config": {"function": "rt_invalid"}},
                {"id": "long", "handler": "noop", "config": {"sleep": 30}},
            ]
        },
    }
    record = await engine.start_execution(halting)
    result = await engine.wait(record.id, timeout=30)
    assert result.status is ExecutionStatus.FAILED
    assert result.error is not None and result.error["category"] == "halted"
    assert result.error["rule"] == 3 and result.error["node"] == "check"
    assert result.nodes["check"].attempt == 1
    assert result.nodes["long"].state is NodeState.CANCELLED
    [notice] = await _journal(engine, record.id, "execution.notice")
    assert (notice["kind"], notice["teams"]) == ("halt", ["data"])
    await until(lambda: _delivered(sink, 1))
    assert sink.notices[-1].addresses == ("https://hooks.example.com/data",)
    # The halt ended the run before its notice went out: the delivery is journalled all the
    # same, and changes nothing of the ended execution.
    await until(lambda: _journal(engine, record.id, "execution.notice_delivered"))
    [confirmed] = await _journal(engine, record.id, "execution.notice_delivered")
    assert confirmed == {"key": sink.notices[-1].key}
    after = await engine.result(record.id)
    assert [(n["kind"], n["delivered"]) for n in after.notices] == [("halt", True)]
    assert (after.status, after.finished_at) == (result.status, result.finished_at)
    stored = await engine.store.get_execution(record.id)
    assert (stored.owner, stored.finished_at) == (None, result.finished_at)


async def test_a_definition_naming_an_unknown_team_is_refused_naming_it(engine: Engine) -> None:
    flow = _flow(routing=[{"condition": "slow.output", "action": "escalate", "target": "legal"}])
    with pytest.raises(DefinitionError) as refused:
        await engine.submit(flow)
    [issue] = refused.value.issues
    assert issue.code == "unknown_team" and issue.field == "routing[0].target"
    assert "unknown team 'legal'" in issue.message


async def test_an_override_may_not_lift_an_approval_or_silence_an_escalation(
    engine: Engine,
) -> None:
    for node, patch in (("routing-2", {"approvers": []}), ("routing-1", {"condition": "false"})):
        with pytest.raises(DefinitionError) as refused:
            await engine.start_execution(DORA_FILE, {"documents": []}, overrides={node: patch})
        [issue] = refused.value.issues
        assert (issue.code, issue.node) == ("routing_override", node)


class _Clock:
    """A clock that moves only when the test says so."""

    def __init__(self, now: float) -> None:
        self.at = now

    def now(self) -> float:
        return self.at

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("passes are run by hand here")


async def test_the_quarterly_schedule_fires_on_the_first_day_of_a_quarter(
    engine: Engine,
) -> None:
    """On a controllable clock. As written the quarterly trigger gives no ``documents``, a
    required input, so its tick would be recorded as skipped: here it gives them."""
    from datetime import UTC, datetime

    from orchestrion.engine.scheduler import Scheduler

    quarter = datetime(2030, 4, 1, tzinfo=UTC).timestamp()
    text = DORA_FILE.read_text(encoding="utf-8").replace(
        '      schedule: "0 0 1 */3 *"  # First day of every quarter',
        '      schedule: "0 0 1 */3 *"  # First day of every quarter\n'
        "      inputs: {documents: []}",
    )
    await engine.submit(text)
    [schedule] = await engine.store.list_schedules()
    assert schedule.id == "DORA Compliance Assessment:quarterly_review"
    await engine.store.record_firings(schedule.id, quarter - 86400, [])  # the day before
    clock = _Clock(quarter - 60)
    scheduler = Scheduler(engine, clock=clock)
    assert await scheduler.run_pass() == []
    clock.at = quarter + 1
    [execution_id] = await scheduler.run_pass()
    assert await scheduler.run_pass() == []  # the same tick: once
    await until(lambda: _waiting_for(engine, execution_id, "routing-2"))
    [escalation, approval] = await _journal(engine, execution_id, "execution.notice")
    assert (escalation["kind"], approval["kind"]) == ("escalation", "approval_required")


@pytest.mark.parametrize(
    ("handler", "patch", "key"),
    [
        ("approval", {"approvers": []}, "approvers"),
        ("human_approval", {"approvers": ["bob"]}, "approvers"),
        ("approval", {"timeout": "1s", "on_timeout": "approve"}, "on_timeout"),
        ("approval", {"timeout": "1s"}, "timeout"),
        ("approval", {"on_reject": "continue"}, "on_reject"),
        ("llm", {"review_below_confidence": None}, "review_below_confidence"),
        ("llm", {"confidence_field": "other"}, "confidence_field"),
    ],
)
async def test_an_override_may_not_change_who_decides_on_a_gate(
    engine: Engine, handler: str, patch: dict[str, Any], key: str
) -> None:
    config: dict[str, Any] = {"approvers": ["cfo"]}
    if handler == "llm":
        config = {"prompt": "score it", "review_below_confidence": 0.9}
    flow = {
        "name": f"gate-{handler}",
        "dag": {"nodes": [{"id": "gate", "handler": handler, "config": config}]},
    }
    with pytest.raises(DefinitionError) as refused:
        await engine.start_execution(flow, {}, overrides={"gate": patch})
    fields = {(i.code, i.node, i.field) for i in refused.value.issues}
    assert ("fixed_override", "gate", f"config.{key}") in fields
    message = {i.field: i.message for i in refused.value.issues}[f"config.{key}"]
    assert "fixed by the definition" in message
    # What does not decide the gate may still be overridden.
    harmless = {"message": "ship it?"} if handler != "llm" else {"temperature": 0.1}
    started = await engine.start_execution(flow, {}, overrides={"gate": harmless})
    await engine.cancel(started.id)
