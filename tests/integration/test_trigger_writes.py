"""A trigger on SQLite takes the file's write lock once before its start is committed: the
claim and the trigger's inputs are one write, not two (with several server processes on one
file, every take of the lock is a turn they all wait for)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from orchestrion.core.states import ExecutionStatus
from orchestrion.engine.facade import Engine
from orchestrion.store.encrypted import EncryptedStore
from orchestrion.store.sql.sqlite import SQLiteStore

FLOW = {
    "name": "writes",
    "dag": {
        "nodes": [
            {"id": "input", "handler": "input"},
            {"id": "out", "handler": "output", "dependencies": ["input"]},
        ]
    },
}


def _count_writes(raw: sqlite3.Connection, writes: list[str]) -> None:
    """Record each write transaction the connection begins: ``BEGIN`` or a write statement
    made outside a transaction (it commits on its own)."""

    def traced(sql: str) -> None:
        verb = sql.split(None, 1)[0].upper()
        if verb == "BEGIN" or (verb in ("INSERT", "UPDATE", "DELETE") and not raw.in_transaction):
            writes.append(sql)

    raw.set_trace_callback(traced)


async def test_a_trigger_writes_its_claim_and_inputs_at_once(tmp_path: Path) -> None:
    async with Engine(f"sqlite:///{tmp_path / 'w.db'}") as engine:
        definition = await engine.submit(FLOW)
        record, _ = await engine.create_execution(definition.id)
        store = engine.store
        if isinstance(store, EncryptedStore):  # the default policy's, sealing nothing here
            store = store.inner
        assert isinstance(store, SQLiteStore)
        assert store._conn is not None
        writes: list[str] = []
        _count_writes(store._conn.raw, writes)
        await engine.trigger(record.id, {"n": 7}, correlation_id="c-1")
        store._conn.raw.set_trace_callback(None)
        # The claim with the inputs, then the engine's commit of the start.
        assert len(writes) == 2, writes
        assert writes[0].startswith("UPDATE executions SET owner")
        result = await engine.wait(record.id, timeout=10)
        assert result.status is ExecutionStatus.COMPLETED
        stored = await engine.store.get_execution(record.id)
        assert (stored.inputs, stored.correlation_id) == ({"n": 7}, "c-1")
