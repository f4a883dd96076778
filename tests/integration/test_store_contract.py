"""One behavioural suite for every store adapter: in memory, SQLite and PostgreSQL.

Records are built by hand the way the state machine builds them, so the suite pins what the
store does with each kind of record without depending on the machine.
"""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.events import Record
from orchestrion.core.states import ExecutionStatus, NodeState
from orchestrion.errors import ExecutionError, ExecutionNotFound, InvalidTransition, StoreError
from orchestrion.governance.audit_chain import ChainHead, verify
from orchestrion.governance.trust import Trust
from orchestrion.store import migrate
from orchestrion.store.audit import AuditEntry, AuditFilter, AuditSigner
from orchestrion.store.base import (
    CommitBatch,
    DefinitionRecord,
    ExecutionFilter,
    ExecutionRecord,
    Store,
    TriggerClaim,
)
from orchestrion.store.memory import MemoryStore
from orchestrion.store.pending_trigger import PendingTrigger
from orchestrion.store.sql.postgres import PostgresStore
from orchestrion.store.sql.sqlite import SQLiteStore

T0 = 1_700_000_000.0


def definition(
    name: str = "wf", version: str = "1", content_hash: str = "h1", id: str | None = None
) -> DefinitionRecord:
    return DefinitionRecord(
        id=id or f"def-{name}-{version}",
        name=name,
        version=version,
        spec={"name": name, "dag": {"nodes": [{"id": "a", "handler": "noop"}]}},
        content_hash=content_hash,
        source_format="yaml",
        dialect="canonical",
        created_at=T0,
        source="name: wf\n",
    )


def execution(
    id: str,
    definition_id: str = "def-wf-1",
    created_at: float = T0,
    status: ExecutionStatus = ExecutionStatus.PENDING,
    key: str | None = None,
) -> ExecutionRecord:
    return ExecutionRecord(
        id=id,
        definition_id=definition_id,
        status=status,
        created_at=created_at,
        inputs={"n": 1},
        idempotency_key=key,
        labels={"team": "data"},
    )


def node(
    kind: str,
    node_id: str,
    state: NodeState,
    at: float,
    *,
    attempt: int = 1,
    output: Any = None,
    has_output: bool = False,
    error: dict[str, Any] | None = None,
    data: dict[str, Any] | None = None,
    started_at: float | None = None,
    finished_at: float | None = None,
    compensation: str | None = None,
) -> Record:
    record = Record(
        type=kind,
        at=at,
        node=node_id,
        attempt=attempt,
        state=state,
        output=output,
        has_output=has_output,
        error=error,
        data=data,
        started_at=started_at,
        finished_at=finished_at,
    )
    if compensation is not None:
        record.extra["compensation"] = compensation
    return record


def run(kind: str, status: ExecutionStatus, at: float, **kw: Any) -> Record:
    return Record(type=kind, at=at, status=status, phase=kw.pop("phase", "run"), **kw)


def batch_of(
    execution_id: str, records: list[Record], prefix: str = "ev", correlation: str | None = None
) -> CommitBatch:
    batch = CommitBatch(correlation={execution_id: correlation})
    cause = None
    for i, record in enumerate(records):
        event_id = f"{prefix}-{execution_id}-{i}"
        batch.add(execution_id, record, event_id, cause)
        cause = event_id
    return batch


ERROR = {"category": "permanent", "message": "boom", "transient": False}
FAILURE = {"category": "node_failed", "message": "node(s) failed: b", "nodes": ["b"]}


def realistic_records() -> list[Record]:
    return [
        run("execution.started", ExecutionStatus.RUNNING, T0 + 1),
        node("node.queued", "a", NodeState.QUEUED, T0 + 1),
        node("node.queued", "b", NodeState.QUEUED, T0 + 1),
        node("node.started", "a", NodeState.RUNNING, T0 + 2, started_at=T0 + 2),
        node("node.started", "b", NodeState.RUNNING, T0 + 2, started_at=T0 + 2),
        node(
            "node.completed",
            "a",
            NodeState.COMPLETED,
            T0 + 3,
            output={"rows": [1, 2, 3], "secret": "never-in-events"},
            has_output=True,
            started_at=T0 + 2,
            finished_at=T0 + 3,
        ),
        node(
            "node.failed",
            "b",
            NodeState.FAILED,
            T0 + 4,
            error=ERROR,
            data={"error": ERROR},
            started_at=T0 + 2,
            finished_at=T0 + 4,
        ),
        run("execution.failed", ExecutionStatus.FAILED, T0 + 5, data={"error": FAILURE}),
    ]


async def seeded(store: Store, *ids: str) -> None:
    await store.put_definition(definition())
    for execution_id in ids:
        await store.create_execution(execution(execution_id))


# ---------------------------------------------------------------- definitions


async def test_definitions_put_get_find(store: Store) -> None:
    stored = await store.put_definition(definition())
    assert stored.id == "def-wf-1"
    got = await store.get_definition("def-wf-1")
    assert got == definition()
    assert (await store.find_definition("wf", "1")).id == "def-wf-1"
    with pytest.raises(ExecutionNotFound):
        await store.get_definition("nope")
    with pytest.raises(ExecutionNotFound):
        await store.find_definition("wf", "9")
    with pytest.raises(ExecutionNotFound):
        await store.find_definition("other")


async def test_definition_versioning(store: Store) -> None:
    assert await store.next_version("wf") == "1"
    await store.put_definition(definition(version="1", content_hash="h1"))
    await store.put_definition(definition(version="2", content_hash="h2"))
    await store.put_definition(definition(version="beta", content_hash="h3"))
    await store.put_definition(definition(name="other", version="7", content_hash="h1"))
    # Non-integer versions are ignored; other names do not count.
    assert await store.next_version("wf") == "3"
    assert await store.next_version("other") == "8"
    # Newest = last stored (same created_at: insertion order decides).
    assert (await store.find_definition("wf")).version == "beta"
    by_hash = await store.find_definition_by_hash("wf", "h2")
    assert by_hash is not None and by_hash.version == "2"
    assert await store.find_definition_by_hash("wf", "zzz") is None
    listed = await store.list_definitions()
    assert [(d.name, d.version) for d in listed] == [
        ("other", "7"),
        ("wf", "1"),
        ("wf", "2"),
        ("wf", "beta"),
    ]
    assert [d.version for d in await store.list_definitions("wf", limit=2, offset=1)] == [
        "2",
        "beta",
    ]
    # The newest version of each name, as find_definition sees it, without the texts.
    heads = await store.definition_heads()
    newest = [await store.find_definition(name) for name in ("other", "wf")]
    assert heads == [(d.name, d.id) for d in newest]


async def test_definition_lifecycle_picks_the_active_version(store: Store) -> None:
    for version in ("1", "2", "3"):
        record = definition(id=f"d{version}", version=version, content_hash=f"h{version}")
        await store.put_definition(replace(record, created_at=T0 + int(version)))
    assert (await store.find_definition("wf")).version == "3"  # none marked: the newest
    activated = await store.set_definition_status("wf", "2", "active", T0 + 10, "alice")
    assert (activated.status, activated.status_changed_by) == ("active", "alice")
    assert activated.status_changed_at == T0 + 10
    assert (await store.find_definition("wf")).version == "2"
    await store.set_definition_status("wf", "1", "active", T0 + 11, "bob")
    statuses = {d.version: d.status for d in await store.list_definitions("wf")}
    assert statuses == {"1": "active", "2": "available", "3": "available"}  # one active
    await store.set_definition_status("wf", "1", "deprecated", T0 + 12)
    assert (await store.find_definition("wf")).version == "3"
    assert (await store.find_definition("wf", "1")).status == "deprecated"  # still by name
    for version in ("2", "3"):
        await store.set_definition_status("wf", version, "deprecated", T0 + 13)
    with pytest.raises(ExecutionNotFound, match="no active version"):
        await store.find_definition("wf")
    with pytest.raises(ExecutionNotFound):
        await store.set_definition_status("wf", "9", "active", T0 + 14)
    with pytest.raises(ExecutionError, match="unknown definition status"):
        await store.set_definition_status("wf", "1", "archived", T0 + 14)


async def test_a_deprecated_version_is_never_active_again(store: Store) -> None:
    for version in ("1", "2"):
        record = definition(id=f"d{version}", version=version, content_hash=f"h{version}")
        await store.put_definition(replace(record, created_at=T0 + int(version)))
    await store.set_definition_status("wf", "2", "active", T0 + 10, "alice")
    await store.set_definition_status("wf", "1", "deprecated", T0 + 11, "alice")
    for status in ("active", "available"):
        with pytest.raises(InvalidTransition, match="version '1' is deprecated"):
            await store.set_definition_status("wf", "1", status, T0 + 12, "mallory")
    statuses = {d.version: d.status for d in await store.list_definitions("wf")}
    assert statuses == {"1": "deprecated", "2": "active"}  # the refusal changed nothing
    again = await store.set_definition_status("wf", "1", "deprecated", T0 + 13, "bob")
    assert again.status == "deprecated"  # deprecating twice is harmless


async def test_activations_at_once_leave_one_active_version(store: Store) -> None:
    versions = [str(v) for v in range(1, 9)]
    for version in versions:
        record = definition(id=f"d{version}", version=version, content_hash=f"h{version}")
        await store.put_definition(replace(record, created_at=T0 + int(version)))
    for round_ in range(3):
        await asyncio.gather(
            *(store.set_definition_status("wf", v, "active", T0 + 10 + round_, v) for v in versions)
        )
        active = [d.version for d in await store.list_definitions("wf") if d.status == "active"]
        assert len(active) == 1, active


async def test_definition_conflict(store: Store) -> None:
    await store.put_definition(definition(content_hash="h1"))
    # Same content again: the existing record, even under another id.
    again = await store.put_definition(definition(content_hash="h1", id="def-other-id"))
    assert again.id == "def-wf-1"
    with pytest.raises(ExecutionError, match="already exists with different content"):
        await store.put_definition(definition(content_hash="h2", id="def-x"))


# ---------------------------------------------------------------- executions


async def test_create_execution_and_idempotency_key(store: Store) -> None:
    await store.put_definition(definition())
    first, created = await store.create_execution(execution("e1", key="k"))
    assert created and first.id == "e1"
    again, created = await store.create_execution(execution("e2", key="k"))
    assert not created and again.id == "e1"
    # Executions without a key never collide.
    assert (await store.create_execution(execution("e3")))[1]
    assert (await store.create_execution(execution("e4")))[1]
    with pytest.raises(ExecutionNotFound):
        await store.get_execution("e2")
    got = await store.get_execution("e1")
    assert got.inputs == {"n": 1}
    assert got.labels == {"team": "data"}
    assert got.status is ExecutionStatus.PENDING


async def test_create_executions_is_one_all_or_nothing_batch(store: Store) -> None:
    await store.put_definition(definition())
    await store.create_execution(execution("e0", key="taken"))
    results = await store.create_executions(
        [
            execution("e1", key="k"),
            execution("e2", key="k"),  # the same key later in the batch: the first one's
            execution("e3", key="taken"),  # a key taken before the batch
            execution("e4"),
        ]
    )
    assert [(stored.id, created) for stored, created in results] == [
        ("e1", True),
        ("e1", False),
        ("e0", False),
        ("e4", True),
    ]
    assert (await store.get_execution("e4")).inputs == {"n": 1}
    # One bad record refuses the whole batch: nothing of it is written.
    with pytest.raises(ExecutionNotFound):
        await store.create_executions(
            [execution("e5"), execution("e6", definition_id="missing"), execution("e7")]
        )
    for missing in ("e5", "e6", "e7"):
        with pytest.raises(ExecutionNotFound):
            await store.get_execution(missing)


async def test_duplicate_ids_are_store_errors(store: Store) -> None:
    await seeded(store, "e1")
    with pytest.raises(StoreError):
        await store.create_execution(execution("e1", key="fresh-key"))
    with pytest.raises(StoreError):
        await store.put_definition(definition(name="renamed", id="def-wf-1"))


async def test_records_without_state_or_status_are_refused(store: Store) -> None:
    await seeded(store, "e1")
    stateless = Record(type="node.queued", at=T0, node="a")
    with pytest.raises(StoreError):
        await store.commit(batch_of("e1", [stateless]))
    statusless = Record(type="execution.started", at=T0)
    with pytest.raises(StoreError):
        await store.commit(batch_of("e1", [statusless]))
    assert await store.list_events() == []


async def test_create_execution_unknown_definition(store: Store) -> None:
    with pytest.raises(ExecutionNotFound):
        await store.create_execution(execution("e1", definition_id="missing"))


async def test_update_execution_inputs(store: Store) -> None:
    await seeded(store, "e1")
    await store.update_execution_inputs("e1", {"x": 2}, {"a": {"retries": 3}}, "corr-1")
    got = await store.get_execution("e1")
    assert (got.inputs, got.overrides, got.correlation_id) == (
        {"x": 2},
        {"a": {"retries": 3}},
        "corr-1",
    )
    with pytest.raises(ExecutionNotFound):
        await store.update_execution_inputs("nope", {}, {}, None)


async def test_trust_is_stored_with_definitions_and_executions(store: Store) -> None:
    trusted = definition(name="own")
    trusted.trust = Trust.TRUSTED
    await store.put_definition(trusted)
    await store.put_definition(definition(name="submitted"))  # untrusted unless said
    assert (await store.get_definition("def-own-1")).trust is Trust.TRUSTED
    assert (await store.find_definition("own")).trust is Trust.TRUSTED
    assert (await store.find_definition("submitted")).trust is Trust.UNTRUSTED
    listed = {d.name: d.trust for d in await store.list_definitions()}
    assert listed == {"own": Trust.TRUSTED, "submitted": Trust.UNTRUSTED}

    mine = execution("e1", definition_id="def-own-1")
    mine.trust = Trust.TRUSTED
    await store.create_executions([mine, execution("e2", definition_id="def-own-1")])
    assert (await store.get_execution("e1")).trust is Trust.TRUSTED
    assert (await store.get_execution("e2")).trust is Trust.UNTRUSTED
    page, _ = await store.list_executions(ExecutionFilter())
    assert {r.id: r.trust for r in page} == {"e1": Trust.TRUSTED, "e2": Trust.UNTRUSTED}
    # Same content stored again by a trusted writer: the first writer's level stays.
    again = definition(name="submitted")
    again.id, again.trust = "other-id", Trust.TRUSTED
    assert (await store.put_definition(again)).trust is Trust.UNTRUSTED


async def test_distrust_execution_only_lowers(store: Store) -> None:
    await store.put_definition(definition())
    record = execution("e1")
    record.trust = Trust.TRUSTED
    await store.create_execution(record)
    await store.distrust_execution("e1")
    assert (await store.get_execution("e1")).trust is Trust.UNTRUSTED
    await store.distrust_execution("e1")  # idempotent
    assert (await store.get_execution("e1")).trust is Trust.UNTRUSTED
    with pytest.raises(ExecutionNotFound):
        await store.distrust_execution("nope")


async def test_one_trigger_of_a_pending_execution_wins(store: Store) -> None:
    await store.put_definition(definition())
    record = execution("e1")
    record.trust = Trust.TRUSTED
    await store.create_execution(record)
    first = PendingTrigger("e1", {"amount": 5}, {"a": {"retries": 3}}, "corr-1")
    second = PendingTrigger("e1", {"amount": 5000}, {}, "corr-2", distrust=True)
    assert await store.trigger_pending(first)
    assert not await store.trigger_pending(second)  # triggered already: nothing changes
    got = await store.get_execution("e1")
    assert (got.inputs, got.overrides, got.correlation_id, got.trust) == (
        {"amount": 5},
        {"a": {"retries": 3}},
        "corr-1",
        Trust.TRUSTED,
    )
    # One that lowers the trust, on an execution never triggered; none on one started.
    await store.create_execution(execution("e2"))
    assert await store.trigger_pending(PendingTrigger("e2", {}, {}, "c", distrust=True))
    assert (await store.get_execution("e2")).trust is Trust.UNTRUSTED
    await store.create_execution(execution("e3", status=ExecutionStatus.RUNNING))
    assert not await store.trigger_pending(PendingTrigger("e3", {"amount": 1}, {}, "c"))
    assert (await store.get_execution("e3")).inputs == {"n": 1}
    with pytest.raises(ExecutionNotFound):
        await store.trigger_pending(PendingTrigger("nope", {}, {}, "c"))


async def test_an_idempotent_create_answers_with_the_stored_trust(store: Store) -> None:
    await store.put_definition(definition())
    await store.create_execution(execution("e1", key="k"))
    retried = execution("e2", key="k")
    retried.trust = Trust.TRUSTED
    got, created = await store.create_execution(retried)
    assert not created
    assert (got.id, got.trust) == ("e1", Trust.UNTRUSTED)


# ---------------------------------------------------------------- commit


async def test_commit_realistic_batch(store: Store) -> None:
    await seeded(store, "e1")
    await store.commit(batch_of("e1", realistic_records(), correlation="corr-1"))

    got = await store.get_execution("e1")
    assert got.status is ExecutionStatus.FAILED
    assert got.started_at == T0 + 1
    assert got.finished_at == T0 + 5
    assert got.updated_at == T0 + 5
    assert got.error == FAILURE

    runs = {r.node_id: r for r in await store.get_node_runs("e1")}
    assert set(runs) == {"a", "b"}
    a, b = runs["a"], runs["b"]
    assert (a.state, a.attempt, a.started_at, a.finished_at) == (
        NodeState.COMPLETED,
        1,
        T0 + 2,
        T0 + 3,
    )
    assert a.output == {"rows": [1, 2, 3], "secret": "never-in-events"}
    assert a.error is None and a.updated_at == T0 + 3
    assert (b.state, b.error, b.output, b.finished_at) == (NodeState.FAILED, ERROR, None, T0 + 4)

    assert await store.get_outputs("e1") == {"a": {"rows": [1, 2, 3], "secret": "never-in-events"}}
    assert await store.get_outputs("e1", ["b"]) == {}
    assert await store.get_outputs("e1", ["a", "zz"]) == {"a": a.output}

    events = await store.list_events("e1")
    assert [e.type for e in events] == [r.type for r in realistic_records()]
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert [e.id for e in events] == [f"ev-e1-{i}" for i in range(8)]
    assert events[0].causation_id is None and events[3].causation_id == "ev-e1-2"
    assert all(e.correlation_id == "corr-1" for e in events)
    assert events[3].node_id == "a" and events[3].attempt == 1
    assert events[0].node_id is None
    for e in events:
        assert "never-in-events" not in repr(e.data)
        assert "output" not in (e.data or {})
    assert events[5].data == {"state": "completed"}
    assert events[6].data is not None and events[6].data["error"] == ERROR
    assert events[7].data == {"error": FAILURE}


async def test_output_survives_a_later_record_without_output(store: Store) -> None:
    await seeded(store, "e1")
    done = node("node.completed", "a", NodeState.COMPLETED, T0 + 1, output=[1, 2], has_output=True)
    await store.commit(batch_of("e1", [done], prefix="b1"))
    compensated = node("node.compensated", "a", NodeState.COMPENSATED, T0 + 2, compensation="done")
    await store.commit(batch_of("e1", [compensated], prefix="b2"))
    (only,) = await store.get_node_runs("e1")
    assert (only.state, only.output, only.compensation) == (NodeState.COMPENSATED, [1, 2], "done")
    assert await store.get_outputs("e1") == {"a": [1, 2]}


async def test_output_survives_within_one_batch(store: Store) -> None:
    await seeded(store, "e1")
    records = [
        node("node.started", "a", NodeState.RUNNING, T0 + 1),
        node("node.completed", "a", NodeState.COMPLETED, T0 + 2, output="x", has_output=True),
        node("node.compensated", "a", NodeState.COMPENSATED, T0 + 3, compensation="done"),
    ]
    await store.commit(batch_of("e1", records))
    (only,) = await store.get_node_runs("e1")
    assert (only.state, only.output, only.updated_at) == (NodeState.COMPENSATED, "x", T0 + 3)
    assert len(await store.list_events("e1")) == 3


async def test_output_none_is_an_output(store: Store) -> None:
    await seeded(store, "e1")
    records = [node("node.completed", "a", NodeState.COMPLETED, T0, has_output=True)]
    await store.commit(batch_of("e1", records))
    assert await store.get_outputs("e1") == {"a": None}


async def test_results_cancel_and_retry(store: Store) -> None:
    await seeded(store, "e1", "e2")
    cancel = [
        run("execution.started", ExecutionStatus.RUNNING, T0 + 1),
        run("execution.cancelled", ExecutionStatus.CANCELLED, T0 + 2, data={"reason": "stop"}),
    ]
    await store.commit(batch_of("e1", cancel, prefix="c"))
    got = await store.get_execution("e1")
    assert got.status is ExecutionStatus.CANCELLED and got.finished_at == T0 + 2
    assert got.error == {"category": "cancelled", "message": "stop"}

    retry = [run("execution.retried", ExecutionStatus.RUNNING, T0 + 3)]
    await store.commit(batch_of("e1", retry, prefix="r"))
    got = await store.get_execution("e1")
    assert (got.status, got.finished_at, got.error) == (ExecutionStatus.RUNNING, None, None)
    assert got.started_at == T0 + 1

    done = batch_of("e1", [run("execution.completed", ExecutionStatus.COMPLETED, T0 + 4)], "d")
    done.results["e1"] = {"answer": 42}
    await store.commit(done)
    got = await store.get_execution("e1")
    assert (got.status, got.result, got.finished_at) == (
        ExecutionStatus.COMPLETED,
        {"answer": 42},
        T0 + 4,
    )
    compensating = run(
        "execution.compensating", ExecutionStatus.RUNNING, T0 + 5, phase="compensate"
    )
    await store.commit(batch_of("e2", [compensating]))
    assert (await store.get_execution("e2")).phase == "compensate"
    # An execution record without a phase leaves the phase as it is.
    recovered = Record(type="execution.recovered", at=T0 + 6, status=ExecutionStatus.RUNNING)
    await store.commit(batch_of("e2", [recovered], prefix="rec"))
    assert (await store.get_execution("e2")).phase == "compensate"


async def test_commit_spanning_executions(store: Store) -> None:
    await seeded(store, "e1", "e2")
    batch = CommitBatch(correlation={"e1": "c1", "e2": "c2"})
    batch.add("e1", node("node.queued", "a", NodeState.QUEUED, T0), "x1", None)
    batch.add("e2", node("node.queued", "a", NodeState.QUEUED, T0), "x2", "x1")
    await store.commit(batch)
    assert [r.state for r in await store.get_node_runs("e1")] == [NodeState.QUEUED]
    assert [r.state for r in await store.get_node_runs("e2")] == [NodeState.QUEUED]
    events = await store.list_events()
    assert [(e.execution_id, e.correlation_id) for e in events] == [("e1", "c1"), ("e2", "c2")]


async def test_empty_batch_is_a_no_op(store: Store) -> None:
    await store.commit(CommitBatch())
    assert await store.list_events() == []


async def _fail_inserts_of_node(store: Store, node_id: str) -> None:
    """Make the database itself refuse node runs of ``node_id``, in the middle of a commit."""
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path)
        try:
            conn.execute(
                f"CREATE TRIGGER refuse BEFORE INSERT ON node_runs WHEN NEW.node_id = '{node_id}'"
                " BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
            )
            conn.commit()
        finally:
            conn.close()
        return
    import asyncpg

    assert isinstance(store, PostgresStore)
    conn = await asyncpg.connect(store.url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(
            "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN"
            f" IF NEW.node_id = '{node_id}' THEN RAISE EXCEPTION 'refused by the test'; END IF;"
            " RETURN NEW; END $$"
        )
        await conn.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON node_runs"
            " FOR EACH ROW EXECUTE FUNCTION refuse()"
        )
    finally:
        await conn.close()


async def test_commit_is_atomic(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("the memory store checks a batch whole before it changes anything")
    await seeded(store, "e1")
    await store.commit(batch_of("e1", [node("node.queued", "z", NodeState.QUEUED, T0)], "old"))
    records = realistic_records()
    # Halfway through the writes, the database refuses one node run.
    await _fail_inserts_of_node(store, records[4].node or "")
    with pytest.raises(StoreError, match="refused by the test"):
        await store.commit(batch_of("e1", records))
    assert (await store.get_execution("e1")).status is ExecutionStatus.PENDING
    assert [r.node_id for r in await store.get_node_runs("e1")] == ["z"]
    assert [e.id for e in await store.list_events("e1")] == ["old-e1-0"]


async def test_commit_duplicate_event_id_within_batch(store: Store) -> None:
    await seeded(store, "e1")
    batch = batch_of("e1", realistic_records())
    batch.event_ids[-1] = batch.event_ids[0]
    with pytest.raises(StoreError):
        await store.commit(batch)
    assert await store.list_events() == []
    assert await store.get_node_runs("e1") == []


async def test_commit_unknown_execution(store: Store) -> None:
    await seeded(store, "e1")
    with pytest.raises(StoreError, match="unknown execution"):
        await store.commit(batch_of("ghost", [node("node.queued", "a", NodeState.QUEUED, T0)]))
    ghost_result = CommitBatch(results={"ghost": 1})
    with pytest.raises(StoreError, match="unknown execution"):
        await store.commit(ghost_result)
    assert await store.list_events() == []


async def test_list_events_filters(store: Store) -> None:
    await seeded(store, "e1", "e2")
    await store.commit(batch_of("e1", realistic_records()))
    await store.commit(batch_of("e2", realistic_records()))
    everything = await store.list_events()
    assert len(everything) == 16
    assert [e.seq for e in everything] == sorted(e.seq for e in everything)
    e2 = await store.list_events("e2")
    assert {e.execution_id for e in e2} == {"e2"} and len(e2) == 8
    later = await store.list_events("e2", after_seq=e2[5].seq)
    assert [e.id for e in later] == [e2[6].id, e2[7].id]
    assert len(await store.list_events(limit=3)) == 3
    assert [e.seq for e in await store.list_events(after_seq=everything[13].seq)] == [
        everything[14].seq,
        everything[15].seq,
    ]
    failed = await store.list_events(types=["node.failed", "execution.failed"])
    assert [e.type for e in failed] == ["node.failed", "execution.failed"] * 2


async def test_an_execution_snapshot_is_the_record_runs_and_events_of_the_types(
    store: Store,
) -> None:
    await seeded(store, "e1", "e2")
    await store.commit(batch_of("e1", realistic_records()))
    await store.commit(batch_of("e2", realistic_records()))
    kinds = ["node.failed", "execution.started"]
    found = await store.get_execution_snapshot("e1", kinds)
    assert found.record == await store.get_execution("e1")
    assert found.runs == await store.get_node_runs("e1")
    assert found.events == [e for e in await store.list_events("e1") if e.type in kinds]
    assert [e.type for e in found.events] == ["execution.started", "node.failed"]
    assert (await store.get_execution_snapshot("e1", [])).events == []
    await store.create_execution(execution("fresh"))
    fresh = await store.get_execution_snapshot("fresh", kinds)
    assert (fresh.runs, fresh.events) == ([], [])
    with pytest.raises(ExecutionNotFound):
        await store.get_execution_snapshot("ghost", kinds)


async def test_a_control_request_is_a_journal_event_that_changes_nothing_else(
    store: Store,
) -> None:
    await seeded(store, "e1", "e2")
    await store.commit(batch_of("e1", realistic_records()))
    before = await store.get_execution("e1")
    runs = await store.get_node_runs("e1")
    head = await store.journal_head()
    assert head == (await store.list_events())[-1].seq
    request = {"verb": "approve", "node": "a", "by": "ada", "comment": None}
    seq = await store.request_control("e1", "req-1", request, T0 + 50)
    assert seq > head and await store.journal_head() == seq
    (found,) = await store.list_events(types=["control.requested"])
    assert (found.seq, found.id, found.execution_id, found.node_id) == (seq, "req-1", "e1", None)
    assert (found.data, found.at) == (request, T0 + 50)
    after = await store.get_execution("e1")
    assert (after.status, after.owner, after.updated_at) == (
        before.status,
        before.owner,
        before.updated_at,
    )
    assert await store.get_node_runs("e1") == runs
    with pytest.raises(ExecutionNotFound):
        await store.request_control("nope", "req-2", request, T0)


async def test_journal_head_of_an_empty_journal_is_zero(store: Store) -> None:
    assert await store.journal_head() == 0


# ---------------------------------------------------------------- listing


async def test_unfinished_executions(store: Store) -> None:
    await store.put_definition(definition())
    statuses = list(ExecutionStatus)
    for i, status in enumerate(statuses):
        await store.create_execution(execution(f"e{i}", created_at=T0 + i, status=status))
    unfinished = await store.unfinished_executions()
    assert [e.status for e in unfinished] == [
        ExecutionStatus.RUNNING,
        ExecutionStatus.WAITING,
        ExecutionStatus.PAUSED,
    ]


async def test_unfinished_executions_include_triggered_owned_pending_ones(store: Store) -> None:
    """A start creates its execution pending, owned and with a correlation id: a crash
    before its start is committed leaves it so, and a restart must start it. Pending ones
    not triggered yet (no owner, or no correlation id) wait for their trigger instead."""
    await store.put_definition(definition())
    base = execution("cut-off", created_at=T0)
    base.owner, base.lease_until, base.correlation_id = "dead-owner", T0, "cut-off"
    await store.create_execution(base)
    untriggered = execution("made", created_at=T0 + 1)
    await store.create_execution(untriggered)
    claimed_only = execution("claimed", created_at=T0 + 2)
    claimed_only.owner, claimed_only.lease_until = "dead-owner", T0
    await store.create_execution(claimed_only)
    assert [e.id for e in await store.unfinished_executions()] == ["cut-off"]


async def test_list_executions_by_id_prefix(store: Store) -> None:
    await store.put_definition(definition())
    for eid in ("ab%1", "ab_2", "abc3", "xab4"):
        await store.create_execution(execution(eid))

    async def ids(prefix: str) -> set[str]:
        page, _ = await store.list_executions(ExecutionFilter(id_prefix=prefix, limit=50))
        return {e.id for e in page}

    assert await ids("ab") == {"ab%1", "ab_2", "abc3"}
    assert await ids("ab%") == {"ab%1"}  # wildcards of LIKE are plain characters
    assert await ids("ab_") == {"ab_2"}
    assert await ids("abc3") == {"abc3"}
    assert await ids("q") == set()
    # The last character there is, or one before the surrogates: no string above to bound by.
    assert await ids("ab\U0010ffff") == set()
    assert await ids("\ud7ff") == set()


async def test_list_and_count_executions_by_id_suffix(store: Store) -> None:
    await store.put_definition(definition())
    for eid in ("1%ab", "2_ab", "3abc", "4xab", "ab"):
        await store.create_execution(execution(eid))

    async def ids(suffix: str, **more: Any) -> set[str]:
        flt = ExecutionFilter(id_suffix=suffix, limit=50, **more)
        page, _ = await store.list_executions(flt)
        counted = sum((await store.count_executions(flt)).values())
        assert counted == len(page)
        return {e.id for e in page}

    assert await ids("ab") == {"1%ab", "2_ab", "4xab", "ab"}
    assert await ids("%ab") == {"1%ab"}  # wildcards of LIKE are plain characters
    assert await ids("_ab") == {"2_ab"}
    assert await ids("3abc") == {"3abc"}
    assert await ids("xab", id_prefix="4") == {"4xab"}
    assert await ids("longer than every id") == set()


async def test_executions_by_trigger_and_counted_by_status(store: Store) -> None:
    await store.put_definition(definition())
    started = {
        "by-api": None,
        "by-key": "my-own-key",
        "by-schedule": "schedule:nightly@1700000000.000",
        "by-event": "event:evt-1:wf",
    }
    for eid, key in started.items():
        record = execution(eid, status=ExecutionStatus.COMPLETED)
        record.idempotency_key = key
        await store.create_execution(record)
    child = execution("by-parent", status=ExecutionStatus.FAILED)
    child.parent_execution_id, child.parent_node_id = "by-api", "sub"
    child.idempotency_key = "child:by-api:sub:1"
    await store.create_execution(child)

    async def ids(trigger: str) -> set[str]:
        page, _ = await store.list_executions(ExecutionFilter(trigger=trigger, limit=50))
        return {e.id for e in page}

    assert await ids("api") == {"by-api", "by-key"}
    assert await ids("schedule") == {"by-schedule"}
    assert await ids("event") == {"by-event"}
    assert await ids("workflow") == {"by-parent"}
    everything = await store.count_executions(ExecutionFilter())
    assert everything == {ExecutionStatus.COMPLETED: 4, ExecutionStatus.FAILED: 1}
    assert await store.count_executions(ExecutionFilter(trigger="workflow")) == {
        ExecutionStatus.FAILED: 1
    }
    only = ExecutionFilter(status=[ExecutionStatus.FAILED], id_prefix="by-a")
    assert await store.count_executions(only) == {}


async def test_executions_counted_over_time(store: Store) -> None:
    await store.put_definition(definition())
    # Buckets of 10 s from T0: 0 holds two, 1 one failed (at its very start), 2 none, 3 one;
    # one before the origin and one at the end are outside.
    for eid, at, status in (
        ("early", T0 - 1, ExecutionStatus.COMPLETED),
        ("a", T0, ExecutionStatus.COMPLETED),
        ("b", T0 + 9.5, ExecutionStatus.COMPLETED),
        ("c", T0 + 10, ExecutionStatus.FAILED),
        ("d", T0 + 39.9, ExecutionStatus.COMPLETED),
        ("late", T0 + 40, ExecutionStatus.COMPLETED),
    ):
        await store.create_execution(execution(eid, created_at=at, status=status))
    series = await store.count_executions_over_time(ExecutionFilter(), T0, 10.0, 4)
    assert series == {
        0: {ExecutionStatus.COMPLETED: 2},
        1: {ExecutionStatus.FAILED: 1},
        3: {ExecutionStatus.COMPLETED: 1},
    }
    failed = ExecutionFilter(status=[ExecutionStatus.FAILED])
    assert await store.count_executions_over_time(failed, T0, 10.0, 4) == {
        1: {ExecutionStatus.FAILED: 1}
    }


async def test_list_executions_filters_and_pages(store: Store) -> None:
    await store.put_definition(definition())
    await store.put_definition(definition(name="other", version="1"))
    for i in range(120):
        status = ExecutionStatus.COMPLETED if i % 3 == 0 else ExecutionStatus.RUNNING
        definition_id = "def-other-1" if i % 4 == 0 else "def-wf-1"
        # Pairs share a timestamp, so the id has to break ties in the cursor.
        await store.create_execution(
            execution(f"e{i:03d}", definition_id, created_at=T0 + i // 2, status=status)
        )

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page, cursor = await store.list_executions(ExecutionFilter(limit=50, cursor=cursor))
        pages += 1
        seen += [e.id for e in page]
        if cursor is None:
            break
    assert pages == 3
    assert seen == [f"e{i:03d}" for i in reversed(range(120))]

    done, _ = await store.list_executions(
        ExecutionFilter(status=[ExecutionStatus.COMPLETED], limit=500)
    )
    assert len(done) == 40 and {e.status for e in done} == {ExecutionStatus.COMPLETED}

    other, _ = await store.list_executions(ExecutionFilter(definition_name="other", limit=500))
    assert len(other) == 30 and {e.definition_id for e in other} == {"def-other-1"}
    by_id, _ = await store.list_executions(ExecutionFilter(definition_id="def-wf-1", limit=500))
    assert len(by_id) == 90

    window, cursor = await store.list_executions(
        ExecutionFilter(created_after=T0 + 10, created_before=T0 + 20, limit=500)
    )
    assert cursor is None
    assert {e.created_at for e in window} == {T0 + t for t in range(11, 20)}

    combined: list[str] = []
    cursor = None
    while True:
        page, cursor = await store.list_executions(
            ExecutionFilter(
                status=[ExecutionStatus.RUNNING], definition_name="wf", limit=7, cursor=cursor
            )
        )
        combined += [e.id for e in page]
        if cursor is None:
            break
    expected = [f"e{i:03d}" for i in reversed(range(120)) if i % 3 and i % 4]
    assert combined == expected

    with pytest.raises(ExecutionError, match="invalid cursor"):
        await store.list_executions(ExecutionFilter(cursor="%%%"))


# ---------------------------------------------------------------- ownership leases

LEASE = T0 + 30  # the lease every first claim below takes, at T0


async def owner_of(store: Store, execution_id: str) -> tuple[str | None, float | None]:
    got = await store.get_execution(execution_id)
    return got.owner, got.lease_until


async def test_claim_a_fresh_execution(store: Store) -> None:
    await store.put_definition(definition())
    await store.create_execution(execution("e1", status=ExecutionStatus.RUNNING))
    assert await owner_of(store, "e1") == (None, None)
    assert await store.claim_execution("e1", "A", LEASE, None, T0)
    assert await owner_of(store, "e1") == ("A", LEASE)
    # Every read path carries the lease.
    (unfinished,) = await store.unfinished_executions()
    listed, _ = await store.list_executions(ExecutionFilter())
    assert (unfinished.owner, unfinished.lease_until) == ("A", LEASE)
    assert [(e.owner, e.lease_until) for e in listed] == [("A", LEASE)]
    with pytest.raises(ExecutionNotFound):
        await store.claim_execution("ghost", "A", LEASE, None, T0)


async def test_create_execution_keeps_owner_and_lease(store: Store) -> None:
    await store.put_definition(definition())
    owned = execution("e1")
    owned.owner, owned.lease_until = "A", LEASE
    await store.create_execution(owned)
    assert await owner_of(store, "e1") == ("A", LEASE)


async def test_second_claimant_loses_while_the_lease_holds(store: Store) -> None:
    await seeded(store, "e1")
    assert await store.claim_execution("e1", "A", LEASE, None, T0)
    assert not await store.claim_execution("e1", "B", T0 + 40, None, T0 + 10)
    assert not await store.claim_execution("e1", "B", T0 + 40, "someone-else", T0 + 10)
    # Expired means strictly past lease_until.
    assert not await store.claim_execution("e1", "B", T0 + 60, None, LEASE)
    assert await owner_of(store, "e1") == ("A", LEASE)


async def test_a_trigger_claim_sets_the_inputs_only_when_it_wins(store: Store) -> None:
    await seeded(store, "e1")
    won = TriggerClaim("e1", "A", LEASE, None, T0, {"n": 1}, {"b": {"x": 2}}, "corr-A")
    assert await store.claim_to_trigger(won)
    got = await store.get_execution("e1")
    assert (got.owner, got.lease_until) == ("A", LEASE)
    assert (got.inputs, got.overrides, got.correlation_id) == ({"n": 1}, {"b": {"x": 2}}, "corr-A")
    # A second trigger while A's lease holds changes nothing, inputs included.
    lost = TriggerClaim("e1", "B", T0 + 40, None, T0 + 10, {"n": 9}, {}, "corr-B")
    assert not await store.claim_to_trigger(lost)
    got = await store.get_execution("e1")
    assert (got.owner, got.inputs, got.correlation_id) == ("A", {"n": 1}, "corr-A")
    with pytest.raises(ExecutionNotFound):
        await store.claim_to_trigger(TriggerClaim("ghost", "A", LEASE, None, T0, {}, {}, None))


async def test_claim_wins_after_the_lease_expired(store: Store) -> None:
    await seeded(store, "e1")
    assert await store.claim_execution("e1", "A", LEASE, None, T0)
    # The owner died: B takes over whatever it expected.
    assert await store.claim_execution("e1", "B", LEASE + 30, None, LEASE + 1)
    assert await owner_of(store, "e1") == ("B", LEASE + 30)
    assert await store.renew_leases("A", ["e1"], LEASE + 60) == ["e1"]
    assert await owner_of(store, "e1") == ("B", LEASE + 30)


async def test_claim_is_a_compare_and_swap_on_the_owner(store: Store) -> None:
    await seeded(store, "e1")
    assert await store.claim_execution("e1", "A", LEASE, None, T0)
    # Expecting the current owner succeeds even though its lease is still valid ...
    assert await store.claim_execution("e1", "B", T0 + 40, "A", T0 + 1)
    assert await owner_of(store, "e1") == ("B", T0 + 40)
    # ... and a stale expectation fails: A lost the race.
    assert not await store.claim_execution("e1", "A", T0 + 50, "A", T0 + 2)
    assert not await store.claim_execution("e1", "A", T0 + 50, None, T0 + 2)
    # The owner re-claiming itself is how a lease is extended through a claim.
    assert await store.claim_execution("e1", "B", T0 + 90, "B", T0 + 3)
    assert await owner_of(store, "e1") == ("B", T0 + 90)


async def test_a_commit_from_an_owner_that_lost_the_execution_is_refused_whole(
    store: Store,
) -> None:
    """A stale engine (its lease ran out, another took over) writes nothing, in any store."""
    await seeded(store, "e1", "e2")
    assert await store.claim_execution("e1", "A", LEASE, None, T0)
    assert await store.claim_execution("e2", "A", LEASE, None, T0)
    assert await store.claim_execution("e2", "B", LEASE + 30, None, LEASE + 1)  # taken over
    batch = CommitBatch(owner="A")
    batch.add("e1", run("execution.started", ExecutionStatus.RUNNING, T0 + 1), "ev-1", None)
    batch.add("e2", node("node.queued", "a", NodeState.QUEUED, T0 + 1), "ev-2", None)
    with pytest.raises(StoreError, match="e2 are not held by this process"):
        await store.commit(batch)
    assert await store.list_events() == []
    # Held by nobody (its new owner ended it, or gave it back): refused all the same.
    await store.release_executions("B", ["e2"])
    with pytest.raises(StoreError, match="e2 are not held by this process"):
        await store.commit(batch)
    assert await store.list_events() == []
    # A batch of no owner (tools, migrations) is not checked.
    batch.owner = None
    await store.commit(batch)
    assert [e.id for e in await store.list_events()] == ["ev-1", "ev-2"]


async def test_renew_leases_returns_the_lost_ones(store: Store) -> None:
    await seeded(store, "e1", "e2", "e3", "e4")
    for execution_id in ("e1", "e2", "e3"):
        assert await store.claim_execution(execution_id, "A", LEASE, None, T0)
    assert await store.claim_execution("e4", "B", LEASE, None, T0)
    assert await store.claim_execution("e3", "B", LEASE, "A", T0 + 1)  # taken over
    lost = await store.renew_leases("A", ["e1", "e2", "e3", "e4", "ghost", "e1"], T0 + 60)
    assert lost == ["e3", "e4", "ghost"]
    assert await owner_of(store, "e1") == ("A", T0 + 60)
    assert await owner_of(store, "e2") == ("A", T0 + 60)
    assert await owner_of(store, "e3") == ("B", LEASE)
    assert await owner_of(store, "e4") == ("B", LEASE)
    assert await store.renew_leases("A", [], T0 + 90) == []
    # A renewal works after expiry as long as nobody took the execution over.
    assert await store.renew_leases("A", ["e1"], T0 + 200) == []
    assert await owner_of(store, "e1") == ("A", T0 + 200)


async def test_release_executions(store: Store) -> None:
    await seeded(store, "e1", "e2", "e3", "e4")
    for execution_id in ("e1", "e2", "e3"):
        assert await store.claim_execution(execution_id, "A", LEASE, None, T0)
    assert await store.claim_execution("e4", "B", LEASE, None, T0)
    await store.release_executions("A", ["e1", "e4", "ghost"])
    assert await owner_of(store, "e1") == (None, None)
    assert await owner_of(store, "e4") == ("B", LEASE)  # not A's to release
    await store.release_executions("A", [])  # an empty list is not "all"
    assert await owner_of(store, "e2") == ("A", LEASE)
    await store.release_executions("A")
    assert [await owner_of(store, e) for e in ("e1", "e2", "e3", "e4")] == [
        (None, None),
        (None, None),
        (None, None),
        ("B", LEASE),
    ]
    # Released: the next process claims at once, without waiting for the old lease to end.
    assert await store.claim_execution("e2", "C", T0 + 40, None, T0 + 1)


@pytest.mark.parametrize(
    "final",
    [
        run("execution.completed", ExecutionStatus.COMPLETED, T0 + 3),
        run("execution.failed", ExecutionStatus.FAILED, T0 + 3, data={"error": FAILURE}),
        run("execution.cancelled", ExecutionStatus.CANCELLED, T0 + 3, data={"reason": "x"}),
    ],
    ids=lambda r: r.type,
)
async def test_final_status_clears_the_owner(store: Store, final: Record) -> None:
    await seeded(store, "e1", "e2")
    assert await store.claim_execution("e1", "A", LEASE, None, T0)
    assert await store.claim_execution("e2", "A", LEASE, None, T0)
    started = [
        run("execution.started", ExecutionStatus.RUNNING, T0 + 1),
        node("node.queued", "a", NodeState.QUEUED, T0 + 1),
    ]
    await store.commit(batch_of("e1", started, prefix="s"))
    assert await owner_of(store, "e1") == ("A", LEASE)  # only a final status releases
    batch = batch_of("e1", [final], prefix="f")
    batch.add("e2", run("execution.waiting", ExecutionStatus.WAITING, T0 + 3), "w", None)
    await store.commit(batch)
    assert await owner_of(store, "e1") == (None, None)
    assert await owner_of(store, "e2") == ("A", LEASE)
    assert await store.renew_leases("A", ["e1", "e2"], T0 + 60) == ["e1"]


# ---------------------------------------------------------------- audit trail and retention

SIGNER = AuditSigner(b"a" * 32, "k1")
AUDIT_KEYS = {"k1": b"a" * 32}


async def kept_head(store: Store) -> ChainHead:
    """The head kept aside, after checking its signature."""
    head = await store.audit_head()
    assert head is not None and head.valid(AUDIT_KEYS) and head.key_id == "k1"
    return head.chain


async def chain_of(store: Store) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = 0
    while page := await store.list_audit(AuditFilter(after_seq=after, limit=3)):  # paging
        rows.extend(record.chain_fields() for record in page)
        after = page[-1].seq
    return rows


async def test_audit_append_list_head_and_verify(store: Store) -> None:
    assert await store.audit_head() is None
    assert await store.append_audit([], SIGNER) == []
    entries = [
        AuditEntry(
            "api.cancel",
            T0 + i,
            actor=f"key:{i % 2}",
            execution_id=f"e{i % 3}",
            outcome="202",
            details={"route": "/v1/x", "n": i, "ü": [1.5, None]},
        )
        for i in range(7)
    ]
    first = await store.append_audit(entries[:4], SIGNER)
    assert [r.seq for r in first] == [1, 2, 3, 4]
    await store.append_audit(entries[4:], SIGNER)
    head = await kept_head(store)
    assert head.seq == 7
    records = await chain_of(store)
    assert [r["seq"] for r in records] == list(range(1, 8))
    stored = await store.audit_head()
    assert stored is not None and not stored.valid({"k1": b"x" * 32})  # a wrong key
    result = verify(records, AUDIT_KEYS, expected_head=head)
    assert result.ok, result.breaks
    assert records[2]["details"] == {"route": "/v1/x", "n": 2, "ü": [1.5, None]}

    async def seqs(**kw: Any) -> list[int]:
        return [r.seq for r in await store.list_audit(AuditFilter(**kw))]

    assert await seqs() == list(range(1, 8))
    assert await seqs(execution_id="e1") == [2, 5]
    assert await seqs(actor="key:0") == [1, 3, 5, 7]
    assert await seqs(action_prefix="api.") == list(range(1, 8))
    assert await seqs(action_prefix="api_") == []  # a prefix, not a pattern
    assert await seqs(since=T0 + 2, until=T0 + 4) == [3, 4]
    assert await seqs(after_seq=5) == [6, 7]
    assert await seqs(limit=2, after_seq=2) == [3, 4]


async def test_commit_with_a_signer_audits_every_transition(store: Store) -> None:
    await seeded(store, "e1", "e2")
    assert await store.claim_execution("e1", "host:1:abc", LEASE, None, T0)  # an engine's
    batch = batch_of("e1", realistic_records())
    batch.owner = "host:1:abc"
    batch.audit = SIGNER
    await store.commit(batch)
    records = await store.list_audit(AuditFilter(limit=100))
    assert [r.action for r in records] == [r.type for r in realistic_records()]
    assert {r.actor for r in records} == {"engine:host:1:abc"}
    failed = records[6]
    assert (failed.node_id, failed.outcome) == ("b", "failed")
    assert failed.details == {"event_id": "ev-e1-6", "attempt": 1, "error": "permanent"}
    assert records[-1].outcome == "failed" and records[-1].node_id is None
    # A refused commit leaves no audit record, and a batch without a signer adds none.
    bad = batch_of("ghost", [node("node.queued", "a", NodeState.QUEUED, T0)])
    bad.audit = SIGNER
    with pytest.raises(StoreError):
        await store.commit(bad)
    await store.commit(batch_of("e2", [node("node.queued", "a", NodeState.QUEUED, T0)]))
    assert len(await store.list_audit(AuditFilter(limit=100))) == 8
    assert verify(await chain_of(store), AUDIT_KEYS, expected_head=await kept_head(store)).ok


async def test_purge_removes_old_finished_executions_and_audits_itself(store: Store) -> None:
    await seeded(store, "old", "recent", "old-running")
    for execution_id, end in (("old", T0 + 5), ("recent", T0 + 500)):
        records = [
            run("execution.started", ExecutionStatus.RUNNING, end - 1),
            node("node.completed", "a", NodeState.COMPLETED, end - 1, output=1, has_output=True),
            run("execution.completed", ExecutionStatus.COMPLETED, end),
        ]
        batch = batch_of(execution_id, records)
        batch.audit = SIGNER
        await store.commit(batch)
    await store.commit(
        batch_of("old-running", [run("execution.started", ExecutionStatus.RUNNING, T0)])
    )
    assert await store.purge_executions(T0 + 100, SIGNER, "cli:ops", T0 + 1000) == 1
    with pytest.raises(ExecutionNotFound):
        await store.get_execution("old")
    assert await store.get_node_runs("old") == []
    assert await store.list_events("old") == []
    assert await store.get_node_runs("recent") != []
    assert (await store.get_execution("old-running")).status is ExecutionStatus.RUNNING
    assert {e.execution_id for e in await store.list_events()} == {"recent", "old-running"}
    # The journal still pages by seq past the gap.
    later = await store.list_events(after_seq=(await store.list_events())[0].seq)
    assert len(later) == len(await store.list_events()) - 1
    (purge,) = await store.list_audit(AuditFilter(action_prefix="retention."))
    assert (purge.actor, purge.at, purge.outcome) == ("cli:ops", T0 + 1000, "purged")
    assert purge.details == {"executions": 1, "finished_before": T0 + 100}
    # Audit records of the purged execution stay, and the chain still verifies.
    assert len(await store.list_audit(AuditFilter(execution_id="old"))) == 3
    assert verify(await chain_of(store), AUDIT_KEYS, expected_head=await kept_head(store)).ok
    assert await store.purge_executions(T0 + 100, None, None, T0 + 1001) == 0
    # Cancelled before it started: it goes too, once old enough.
    await store.create_execution(execution("never-started"))
    await store.commit(
        batch_of("never-started", [run("execution.cancelled", ExecutionStatus.CANCELLED, T0)])
    )
    assert await store.purge_executions(T0, None, None, T0 + 1002) == 0
    assert await store.purge_executions(T0 + 1, None, None, T0 + 1002) == 1


async def test_a_purge_of_the_newest_events_never_lets_their_seqs_come_back(
    store: Store,
) -> None:
    await seeded(store, "kept", "old", "new")
    await store.commit(batch_of("kept", [run("execution.started", ExecutionStatus.RUNNING, T0)]))
    records = [
        run("execution.started", ExecutionStatus.RUNNING, T0),
        run("execution.completed", ExecutionStatus.COMPLETED, T0 + 1),
    ]
    await store.commit(batch_of("old", records))  # the newest events of the journal
    seen = max(e.seq for e in await store.list_events())
    assert await store.purge_executions(T0 + 100, None, None, T0 + 1000) == 1
    assert {e.execution_id for e in await store.list_events()} == {"kept"}
    await store.commit(batch_of("new", [run("execution.started", ExecutionStatus.RUNNING, T0)]))
    (fresh,) = await store.list_events("new")
    assert fresh.seq > seen
    # A reader paging the whole journal from where it stopped sees the new event.
    assert [e.execution_id for e in await store.list_events(after_seq=seen)] == ["new"]
    assert await store.purge_executions(T0 + 100, None, None, T0 + 1001) == 0
    assert {e.execution_id for e in await store.list_events()} == {"kept", "new"}


# ---------------------------------------------------------------- SQLite only


async def test_sqlite_claim_race_across_connections(tmp_path: Path) -> None:
    """Separate stores on one file (as separate processes would be): exactly one wins."""
    path = tmp_path / "race.db"
    stores = [SQLiteStore(path) for _ in range(8)]
    for each in stores:
        await each.open()
    try:
        await seeded(stores[0], "e1")
        barrier = threading.Barrier(len(stores))
        wins: list[str] = []

        def contend(i: int) -> None:
            barrier.wait()
            # One event loop per thread: the claims really race for SQLite's write lock.
            if asyncio.run(stores[i].claim_execution("e1", f"p{i}", LEASE, None, T0)):
                wins.append(f"p{i}")

        threads = [threading.Thread(target=contend, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(wins) == 1
        assert await owner_of(stores[0], "e1") == (wins[0], LEASE)
    finally:
        for each in stores:
            await each.close()


async def test_sqlite_appenders_across_connections_never_fork_the_chain(tmp_path: Path) -> None:
    """Separate stores on one file (as separate processes): commits and appends race for the
    write lock from their own threads, and leave one chain."""
    path = tmp_path / "chain.db"
    stores = [SQLiteStore(path) for _ in range(4)]
    for each in stores:
        await each.open()
    try:
        await seeded(stores[0], *(f"e{i}" for i in range(len(stores))))
        barrier = threading.Barrier(len(stores))

        def append(i: int) -> None:
            async def go() -> None:
                for turn in range(10):
                    batch = batch_of(
                        f"e{i}", [node("node.queued", f"n{turn}", NodeState.QUEUED, T0)], f"t{turn}"
                    )
                    batch.audit = SIGNER
                    await stores[i].commit(batch)
                    await stores[i].append_audit([AuditEntry("api.x", T0, actor=f"w{i}")], SIGNER)

            barrier.wait()
            asyncio.run(go())

        threads = [threading.Thread(target=append, args=(i,)) for i in range(len(stores))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        records = await chain_of(stores[0])
        assert len(records) == len(stores) * 10 * 2
        result = verify(records, AUDIT_KEYS, expected_head=await kept_head(stores[0]))
        assert result.ok, result.breaks
    finally:
        for each in stores:
            await each.close()


async def test_sqlite_checkpoints_run_off_the_commits_and_leave_no_wal(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    store = SQLiteStore(path)
    await store.open()
    try:
        await seeded(store, "e1")
        checkpointer = store._checkpointer
        assert checkpointer is not None
        checkpointer.every = 5
        for i in range(12):
            record = node("node.queued", f"n{i}", NodeState.QUEUED, T0)
            await store.commit(batch_of("e1", [record], prefix=f"b{i}"))
        deadline = time.monotonic() + 10
        # Two wakes close together make one checkpoint: at least one has run.
        while checkpointer.checkpoints < 1:
            assert time.monotonic() < deadline, "no checkpoint on the thread"
            await asyncio.sleep(0.01)
        assert len(await store.get_node_runs("e1")) == 12
    finally:
        await store.close()
    # The last connection to close checkpoints what is left and removes the WAL.
    assert not path.with_name(path.name + "-wal").exists()


async def test_sqlite_file_at_0001_is_upgraded_on_open(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    migrate.upgrade(f"sqlite:///{path}", "0001")
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO definitions VALUES ('d', 'wf', '1', '{}', 'h', 'yaml', 'canonical',"
            " NULL, 0)"
        )
        conn.execute(
            "INSERT INTO executions (id, definition_id, status, phase, inputs, overrides,"
            " labels, created_at) VALUES ('e1', 'd', 'running', 'run', '{}', '{}', '{}', 1)"
        )
        conn.commit()
    finally:
        conn.close()
    assert migrate.current_revision(path) == "0001"

    store = SQLiteStore(path)
    await store.open()
    try:
        assert migrate.current_revision(path) == migrate.HEAD_REVISION == "0014"
        got = await store.get_execution("e1")
        assert (got.status, got.owner, got.lease_until) == (ExecutionStatus.RUNNING, None, None)
        # Rows from before 0005 cannot be told apart: the service's or one's own? Untrusted.
        assert got.trust is Trust.UNTRUSTED
        old = await store.get_definition("d")
        assert old.trust is Trust.UNTRUSTED
        assert (old.status, old.created_by) == ("available", None)  # 0008: as before
        assert (await store.find_definition("wf")).id == "d"
        assert await store.claim_execution("e1", "A", LEASE, None, T0)
        assert await owner_of(store, "e1") == ("A", LEASE)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        columns = {row[1]: row for row in conn.execute("PRAGMA table_info(executions)")}
    finally:
        conn.close()
    assert columns["owner"][2:4] == ("VARCHAR(255)", 0)  # type, notnull
    assert columns["lease_until"][2:4] == ("FLOAT", 0)


async def test_sqlite_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    first = SQLiteStore(path)
    await first.open()
    await seeded(first, "e1")
    await first.commit(batch_of("e1", realistic_records()))
    await first.close()

    second = SQLiteStore(path)
    await second.open()
    try:
        assert (await second.get_execution("e1")).status is ExecutionStatus.FAILED
        assert await second.get_outputs("e1") == {
            "a": {"rows": [1, 2, 3], "secret": "never-in-events"}
        }
        assert len(await second.list_events("e1")) == 8
        assert (await second.get_definition("def-wf-1")).spec == definition().spec
        # seq goes on increasing after a reopen.
        await second.commit(batch_of("e1", [node("node.reset", "b", NodeState.PENDING, T0)], "n"))
        events = await second.list_events("e1")
        assert events[-1].seq > events[-2].seq
    finally:
        await second.close()


async def test_sqlite_store_not_open(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not open"):
        await SQLiteStore(tmp_path / "x.db").get_execution("e1")


async def test_sqlite_unencodable_output_fails_before_writing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "x.db")
    await store.open()
    try:
        await seeded(store, "e1")
        bad = node("node.completed", "a", NodeState.COMPLETED, T0, output={1, 2}, has_output=True)
        with pytest.raises(StoreError, match="not JSON-serialisable"):
            await store.commit(batch_of("e1", [bad]))
        assert await store.list_events() == []
    finally:
        await store.close()


async def test_sqlite_fresh_file_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "fresh.db"
    store = SQLiteStore(path)
    await store.open()
    await store.close()
    conn = sqlite3.connect(path)
    try:
        (version,) = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        tables = {
            row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        (mode,) = conn.execute("PRAGMA journal_mode").fetchone()
    finally:
        conn.close()
    assert version == migrate.HEAD_REVISION
    assert {"definitions", "executions", "node_runs", "events"} <= tables
    assert mode == "wal"


@pytest.mark.slow
def test_sqlite_open_imports_alembic_only_to_upgrade(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from orchestrion.store.sql.sqlite import SQLiteStore

        async def main():
            store = SQLiteStore(sys.argv[1])
            await store.open()
            await store.close()

        asyncio.run(main())
        print(sorted(m for m in ("alembic", "sqlalchemy") if m in sys.modules))
        """
    )

    def loaded(path: Path) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True
        )
        return done.stdout.strip()

    fresh = tmp_path / "fresh.db"
    assert loaded(fresh) == "[]"  # a new file is created from the rendered head script
    assert loaded(fresh) == "[]"  # already at head
    # A file with content but an older (here: no) schema goes through Alembic.
    older = tmp_path / "older.db"
    conn = sqlite3.connect(older)
    conn.execute("CREATE TABLE unrelated (x)")
    conn.commit()
    conn.close()
    assert loaded(older) == "['alembic', 'sqlalchemy']"
    assert loaded(older) == "[]"


# ---------------------------------------------------------------- PostgreSQL only


async def test_postgres_concurrent_appenders_never_fork_the_chain(postgres_url: str) -> None:
    """Separate stores (as separate processes): commits and appends at once, one chain."""
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    await asyncio.gather(*(each.open() for each in stores))
    try:
        ids = [f"e{i}" for i in range(8)]
        await seeded(stores[0], *ids)

        async def commit_many(index: int) -> None:
            each = stores[index % len(stores)]
            for turn in range(5):
                batch = batch_of(
                    ids[index],
                    [node("node.queued", f"n{turn}", NodeState.QUEUED, T0 + turn)],
                    prefix=f"t{turn}",
                )
                batch.audit = SIGNER
                await each.commit(batch)
                await each.append_audit([AuditEntry("api.x", T0, actor=f"w{index}")], SIGNER)

        await asyncio.gather(*(commit_many(i) for i in range(len(ids))))
        records = await chain_of(stores[0])
        assert len(records) == 8 * 5 * 2
        result = verify(records, AUDIT_KEYS, expected_head=await kept_head(stores[0]))
        assert result.ok, result.breaks
    finally:
        await asyncio.gather(*(each.close() for each in stores))


async def test_postgres_claim_race_across_engines(postgres_url: str) -> None:
    """Separate stores (separate pools, as separate processes would be): exactly one wins."""
    stores = [PostgresStore(postgres_url) for _ in range(8)]
    # Opened together: the advisory lock lets exactly one of them migrate.
    await asyncio.gather(*(each.open() for each in stores))
    try:
        await seeded(stores[0], "e1")
        won = await asyncio.gather(
            *(each.claim_execution("e1", f"p{i}", LEASE, None, T0) for i, each in enumerate(stores))
        )
        assert won.count(True) == 1
        assert await owner_of(stores[0], "e1") == (f"p{won.index(True)}", LEASE)
    finally:
        await asyncio.gather(*(each.close() for each in stores))


async def test_postgres_survives_close_and_reopen(postgres_url: str) -> None:
    first = PostgresStore(postgres_url)
    await first.open()
    await seeded(first, "e1")
    await first.commit(batch_of("e1", realistic_records()))
    await first.close()

    second = PostgresStore(postgres_url)
    await second.open()
    try:
        assert (await second.get_execution("e1")).status is ExecutionStatus.FAILED
        assert len(await second.list_events("e1")) == 8
        await second.commit(batch_of("e1", [node("node.reset", "b", NodeState.PENDING, T0)], "n"))
        events = await second.list_events("e1")
        assert events[-1].seq > events[-2].seq
    finally:
        await second.close()


async def test_postgres_connections_the_server_ended_are_replaced_unseen(
    postgres_url: str,
) -> None:
    # As after a server restart: every backend of the store's pools ends while pooled.
    import asyncpg

    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await seeded(store, "e1")
        # Several connections in each pool (reads, and transactions).
        await asyncio.gather(*(store.get_execution("e1") for _ in range(4)))
        await asyncio.gather(*(store.create_execution(execution(f"x{i}")) for i in range(4)))
        admin = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg", "postgresql"))
        try:
            ended = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        finally:
            await admin.close()
        assert ended >= 2
        await asyncio.sleep(0.2)  # the server's goodbye reaches the pooled connections
        # Each call gets a live connection: none fails on one the server ended.
        for i in range(8):
            assert (await store.get_execution("e1")).id == "e1"
            queued = [node("node.queued", "a", NodeState.QUEUED, T0)]
            await store.commit(batch_of("e1", queued, f"after-{i}"))
        assert len(await store.list_events("e1")) == 8
    finally:
        await store.close()


async def test_postgres_store_not_open() -> None:
    with pytest.raises(StoreError, match="not open"):
        await PostgresStore("postgresql://nobody@127.0.0.1/none").get_execution("e1")


async def test_postgres_unreachable_server_is_a_store_error() -> None:
    store = PostgresStore("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StoreError, match="cannot open") as caught:
        await store.open()
    assert "postgresql://nobody@127.0.0.1:1/none" in str(caught.value)


async def test_postgres_missing_database_says_so_in_the_servers_words(postgres_url: str) -> None:
    from sqlalchemy.engine import make_url

    url = make_url(postgres_url).set(password="hunter2", database="no_such_database_here")
    store = PostgresStore(url.render_as_string(hide_password=False))
    with pytest.raises(StoreError) as caught:
        await store.open()
    message = str(caught.value)
    assert 'database "no_such_database_here" does not exist' in message
    assert "hunter2" not in message
    assert "sqlalchemy" not in message.lower() and "sqlalche.me" not in message
    assert "+asyncpg" not in message


async def test_postgres_unencodable_output_fails_before_writing(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await seeded(store, "e1")
        bad = node("node.completed", "a", NodeState.COMPLETED, T0, output={1, 2}, has_output=True)
        with pytest.raises(StoreError, match="not JSON-serialisable"):
            await store.commit(batch_of("e1", [bad]))
        assert await store.list_events() == []
    finally:
        await store.close()


async def postgres_at(url: str, revision: str, *statements: str) -> None:
    """Make the database at ``url`` again, migrated up to ``revision`` only, then run
    ``statements`` on it: rows as a process of that time wrote them."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    from orchestrion.store.sql.postgres import asyncpg_url

    def upgrade(conn: Any) -> None:
        config = Config()
        config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    engine = create_async_engine(asyncpg_url(url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DROP SCHEMA public CASCADE"))
            await conn.execute(text("CREATE SCHEMA public"))
            await conn.run_sync(upgrade)
            for statement in statements:
                await conn.execute(text(statement))
    finally:
        await engine.dispose()


async def test_postgres_rows_from_before_0005_are_untrusted(postgres_url: str) -> None:
    """The PostgreSQL side of 0005: existing rows read as untrusted, new ones keep theirs."""
    await postgres_at(
        postgres_url,
        "0004",
        "INSERT INTO definitions VALUES ('d', 'wf', '1', '{}', 'h', 'yaml', 'canonical', NULL, 0)",
        "INSERT INTO executions (id, definition_id, status, phase, inputs, overrides, labels,"
        " created_at) VALUES ('e1', 'd', 'failed', 'run', '{}', '{}', '{}', 1)",
    )
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        assert (await store.get_execution("e1")).trust is Trust.UNTRUSTED
        assert (await store.get_definition("d")).trust is Trust.UNTRUSTED
        mine = execution("e2", definition_id="d")
        mine.trust = Trust.TRUSTED
        await store.create_execution(mine)
        assert (await store.get_execution("e2")).trust is Trust.TRUSTED
    finally:
        await store.close()


async def test_postgres_finds_executions_by_id_prefix_through_an_index(
    postgres_url: str,
) -> None:
    # The primary key is in the database's collation (C.UTF-8, en_US.UTF-8 on most servers),
    # the prefix range is byte-wise: without an index of the ids' bytes, every lookup of an
    # id by its first characters read every execution row.
    from orchestrion.engine.ids import new_record_id

    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await store.put_definition(definition())
        ids = [new_record_id() for _ in range(200)]
        for eid in ids:
            await store.create_execution(execution(eid))
        wanted = ExecutionFilter(id_prefix=ids[7][:-4], limit=50)
        page, _ = await store.list_executions(wanted)
        assert ids[7] in {e.id for e in page}
        text = await postgres_plan(store, wanted)
        # The range bounds the index scan (an index read whole, filtered, has no Index Cond).
        assert "Index Cond" in text and "Seq Scan" not in text, text
    finally:
        await store.close()


async def postgres_plan(store: PostgresStore, wanted: ExecutionFilter) -> str:
    """PostgreSQL's plan of the executions ``wanted`` selects, sequential scans turned off:
    a plan that reads every row then means no index could answer."""
    where, params = store._execution_filter(wanted)
    async with store._connection() as conn:
        await conn.run("SET enable_seqscan = off")
        plan = await conn.rows(
            "EXPLAIN SELECT id FROM executions WHERE " + " AND ".join(where), params
        )
    return "\n".join(row[0] for row in plan)


async def test_followers_owed_are_committed_with_the_batch_until_settled(store: Store) -> None:
    await seeded(store, "e1", "e2")
    batch = CommitBatch(correlation={"e1": "c1"})
    batch.add("e1", node("node.queued", "a", NodeState.QUEUED, T0), "f1", None)
    batch.follows.append(("e1", "workflow.completed"))
    await store.commit(batch)
    again = CommitBatch(correlation={"e1": "c1", "e2": "c2"})
    again.add("e1", node("node.started", "a", NodeState.RUNNING, T0), "f2", None)
    again.add("e2", node("node.queued", "a", NodeState.QUEUED, T0), "f3", None)
    again.follows += [("e1", "workflow.completed"), ("e2", "workflow.failed")]
    await store.commit(again)  # a row owed already stays one row
    owed = await store.owed_follows(time.time() + 1)
    assert sorted(owed) == [("e1", "workflow.completed"), ("e2", "workflow.failed")]
    assert await store.owed_follows(T0 - 1) == []  # none recorded that early
    await store.settle_follow("e1")
    await store.settle_follow("e1")  # settled twice: nothing to do
    assert await store.owed_follows(time.time() + 1) == [("e2", "workflow.failed")]


async def test_executions_are_found_by_their_idempotency_keys(store: Store) -> None:
    await store.put_definition(definition())
    for i in range(3):
        await store.create_execution(execution(f"k{i}", key=f"key-{i}"))
    await store.create_execution(execution("nokey"))
    flt = ExecutionFilter(idempotency_keys=["key-0", "key-2", "key-9"], limit=10)
    rows, _ = await store.list_executions(flt)
    assert sorted(r.id for r in rows) == ["k0", "k2"]
    none, _ = await store.list_executions(ExecutionFilter(idempotency_keys=[], limit=10))
    assert none == []
