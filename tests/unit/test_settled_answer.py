"""The state a control request answers: never a record read before the commit it saw."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any, cast

from orchestrion.api.settled import state_after
from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.store.base import ExecutionRecord


class _Reads:
    """Store reads where the orchestrator's commit lands between two reads of one poll."""

    def __init__(self, before: ExecutionRecord, after: ExecutionRecord) -> None:
        self.record = before
        self.after = after

    async def execution(self, execution_id: str) -> ExecutionRecord:
        return self.record

    async def node_left_waiting(self) -> bool:
        self.record = self.after  # the commit lands now, after the record was read
        return True


def _record(status: ExecutionStatus) -> ExecutionRecord:
    return ExecutionRecord(
        id="e1",
        definition_id="d1",
        status=status,
        inputs={},
        created_at=1.0,
    )


def test_a_check_that_reads_more_rows_answers_the_record_after_them() -> None:
    reads = _Reads(_record(ExecutionStatus.WAITING), _record(ExecutionStatus.COMPLETED))
    engine = cast(Engine, cast(Any, type("E", (), {"reads": reads}))())

    async def decided(record: ExecutionRecord) -> bool:
        return await reads.node_left_waiting()

    settled = asyncio.run(state_after(engine, "e1", decided, wait=1.0))
    assert settled.applied
    assert settled.record.status is ExecutionStatus.COMPLETED


def test_a_check_on_the_record_alone_answers_that_record() -> None:
    record = _record(ExecutionStatus.PAUSED)
    reads = _Reads(record, replace(record, status=ExecutionStatus.RUNNING))
    engine = cast(Engine, cast(Any, type("E", (), {"reads": reads}))())
    settled = asyncio.run(
        state_after(engine, "e1", lambda r: r.status is ExecutionStatus.PAUSED, wait=1.0)
    )
    assert settled.applied
    assert settled.record.status is ExecutionStatus.PAUSED


def test_a_pause_or_resume_followed_by_an_end_says_the_execution_ended() -> None:
    from orchestrion.api.models import ActionResponse
    from orchestrion.api.routes.control import _ended_since

    for status in ("CANCELLED", "COMPLETED", "FAILED"):
        answer = _ended_since(
            ActionResponse(execution_id="e1", status=status, message="Workflow resumed")
        )
        assert answer.message == f"Workflow resumed; the execution has since ended ({status})"
    for status in ("RUNNING", "PAUSED", "WAITING"):
        answer = _ended_since(
            ActionResponse(execution_id="e1", status=status, message="Workflow paused")
        )
        assert answer.message == "Workflow paused"
