"""What several processes on one database learn of each other through the store, in every
store: the executions written since a mark (``touched_since``), and a control request's audit
record sealed with it (``request_control`` with a signer)."""

from __future__ import annotations

from test_store_contract import (
    AUDIT_KEYS,
    SIGNER,
    T0,
    batch_of,
    chain_of,
    kept_head,
    node,
    realistic_records,
    seeded,
)

from orchestrion.core.events import NodeLogged
from orchestrion.core.states import NodeState
from orchestrion.governance.audit_chain import verify
from orchestrion.store.audit import AuditFilter
from orchestrion.store.base import TOUCHED_LIMIT, Store

LINE = {"at": T0, "level": "INFO", "logger": "steps", "message": "step"}


async def test_touched_since_names_the_executions_with_new_events_or_log_lines(
    store: Store,
) -> None:
    await seeded(store, "e1", "e2", "e3")
    marks, unknown = await store.touched_since(None)
    assert marks == (0, 0) and unknown is None  # no marks given: only the marks now
    assert await store.touched_since(marks) == (marks, set())

    await store.commit(batch_of("e1", realistic_records()))
    events_only, touched = await store.touched_since(marks)
    assert touched == {"e1"} and events_only[0] == await store.journal_head()

    logged = batch_of("e2", [])
    logged.logs.append(("e2", NodeLogged("a", 1, T0, (LINE, LINE))))
    await store.commit(logged)
    logs_only, touched = await store.touched_since(events_only)
    # PostgreSQL reads back a little below its marks (seqs that commit out of order): it
    # may name again what was written just before, never what was not written.
    assert touched is not None and "e2" in touched and touched <= {"e1", "e2"}
    if getattr(store, "SEQ_LOOKBACK", 0) == 0:
        assert touched == {"e2"}
    assert logs_only[0] == events_only[0] and logs_only[1] > events_only[1]

    await store.request_control("e3", "req-1", {"verb": "cancel"}, T0)
    await store.commit(batch_of("e1", [node("node.queued", "c", NodeState.QUEUED, T0)], "x"))
    now, touched = await store.touched_since(logs_only)
    assert touched is not None and {"e1", "e3"} <= touched <= {"e1", "e2", "e3"}
    assert await store.touched_since(now) == (now, set())


async def test_touched_since_gives_up_naming_past_its_limit(store: Store) -> None:
    ids = [f"e{i}" for i in range(TOUCHED_LIMIT + 1)]
    await seeded(store, *ids)
    marks, _ = await store.touched_since(None)
    batch = batch_of(ids[0], [])
    for execution_id in ids:
        batch.add(execution_id, node("node.queued", "a", NodeState.QUEUED, T0), execution_id, None)
    await store.commit(batch)
    _, touched = await store.touched_since(marks)
    assert touched is None  # too many to name: the caller wakes every stream


async def test_a_control_request_with_a_signer_is_audited_with_it(store: Store) -> None:
    await seeded(store, "e1")
    committed = batch_of("e1", realistic_records())
    committed.audit = SIGNER
    await store.commit(committed)
    request = {"verb": "cancel", "reason": "stop", "requested_by": "host:2:def"}
    await store.request_control("e1", "req-1", request, T0 + 9, SIGNER)
    records = await store.list_audit(AuditFilter(limit=100))
    last = records[-1]
    assert (last.action, last.actor, last.execution_id) == (
        "control.requested",
        "engine:host:2:def",
        "e1",
    )
    assert last.details == {"event_id": "req-1", "verb": "cancel"}
    assert verify(await chain_of(store), AUDIT_KEYS, expected_head=await kept_head(store)).ok
    await store.request_control("e1", "req-2", request, T0 + 10)  # no signer: no record
    assert len(await store.list_audit(AuditFilter(limit=100))) == len(records)
