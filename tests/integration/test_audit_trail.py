"""The audit trail of real runs: every committed transition audited in its commit, violations
recorded through the hook, nothing when no key is set, one chain for concurrent engines."""

from __future__ import annotations

import asyncio
from pathlib import Path

from audit_helpers import audited, unaudited
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.errors import PolicyViolation
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.store.audit import AuditFilter

FLOW = {
    "name": "audited",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
            {"id": "c", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


async def test_every_committed_transition_has_its_audit_record(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'a.db'}", governance=audited()) as engine:
        result = await engine.run(FLOW)
        assert result.status is ExecutionStatus.COMPLETED
        events = await engine.store.list_events(result.execution_id)
        records = await engine.audit.list(AuditFilter(limit=1000))
        assert [r.details["event_id"] for r in records if r.details] == [e.id for e in events]
        assert [(r.action, r.node_id) for r in records] == [(e.type, e.node_id) for e in events]
        assert {r.actor for r in records} == {f"engine:{engine.owner}"}
        assert records[-1].action == "execution.completed"
        assert records[-1].outcome == "completed"
        verification = await engine.audit.verify()
        assert verification.ok and verification.records == len(events)
        assert engine.audit.status().to_dict()["key_id"] == "k1"


async def test_the_violation_hook_writes_a_policy_record(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'a.db'}", governance=audited()) as engine:
        sealed = await engine.audit.violation(
            "ssrf", "169.254.169.254 is denied", execution_id="e1", node_id="fetch"
        )
        assert sealed is not None and sealed.seq == 1
        (found,) = await engine.audit.list(AuditFilter(action_prefix="policy."))
        assert (found.outcome, found.node_id) == ("ssrf", "fetch")
        assert found.details == {"message": "169.254.169.254 is denied"}
        assert (await engine.audit.verify()).ok


@function("t_audit_blocked", replace=True)
def t_audit_blocked(ctx: NodeContext) -> None:
    raise PolicyViolation("model gpt-x is not allowed (secret detail)")


async def test_a_node_failed_by_a_control_is_audited_with_its_category(tmp_path: Path) -> None:
    blocked = {
        "name": "blocked",
        "dag": {
            "nodes": [{"id": "ask", "handler": "python", "config": {"function": "t_audit_blocked"}}]
        },
    }
    async with Engine(f"sqlite:///{tmp_path / 'a.db'}", governance=audited()) as engine:
        result = await engine.run(blocked)
        assert result.status is ExecutionStatus.FAILED
        failed = await engine.audit.list(
            AuditFilter(execution_id=result.execution_id, action_prefix="node.failed")
        )
        (record,) = failed
        assert (record.node_id, record.outcome) == ("ask", "failed")
        assert record.details is not None and record.details["error"] == "policy_violation"
        assert "secret detail" not in repr(failed)  # messages stay in the journal


async def test_without_an_audit_key_nothing_is_written(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'a.db'}", governance=unaudited()) as engine:
        await engine.run(FLOW)
        assert await engine.audit.record("api.x") is None
        assert await engine.store.list_audit(AuditFilter()) == []
        status = engine.audit.status()
        assert not status.enabled and status.reason == "ORCHESTRION_AUDIT_KEYS is not set"


async def test_two_engines_on_one_postgresql_leave_one_chain(postgres_url: str) -> None:
    first = Engine(postgres_url, governance=audited())
    second = Engine(postgres_url, governance=audited())
    async with first, second:
        results = await asyncio.gather(*(e.run(FLOW) for e in [first, second] * 10))
        assert {r.status for r in results} == {ExecutionStatus.COMPLETED}
        verification = await first.audit.verify()
        assert verification.ok, verification.breaks
        actors = {r.actor for r in await first.audit.list(AuditFilter(limit=10_000))}
        assert actors == {f"engine:{first.owner}", f"engine:{second.owner}"}
        assert verification.records == len(await first.store.list_events(limit=10_000))
