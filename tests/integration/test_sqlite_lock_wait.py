"""Waiting for SQLite's write lock, held by another connection (another process, as with
``orchestrion serve --workers N``), without stopping the event loop: the store goes on
reading meanwhile, and writes once the lock is free."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import StoreError
from orchestrion.store.base import DefinitionRecord, ExecutionFilter, ExecutionRecord
from orchestrion.store.sql import sqlite_busy
from orchestrion.store.sql.sqlite import SQLiteStore

T0 = 1_700_000_000.0


def definition(name: str = "wf") -> DefinitionRecord:
    return DefinitionRecord(
        id=f"def-{name}-1",
        name=name,
        version="1",
        spec={"name": name, "dag": {"nodes": [{"id": "a", "handler": "noop"}]}},
        content_hash=f"h-{name}",
        source_format="yaml",
        dialect="canonical",
        created_at=T0,
    )


def execution(id: str, key: str | None = None) -> ExecutionRecord:
    return ExecutionRecord(
        id=id,
        definition_id="def-wf-1",
        status=ExecutionStatus.PENDING,
        created_at=T0,
        idempotency_key=key,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    store = SQLiteStore(tmp_path / "s.db")
    await store.open()
    await store.put_definition(definition())
    await store.create_execution(execution("seen"))
    yield store
    await store.close()


@pytest.fixture
def other_writer(store: SQLiteStore) -> Iterator[sqlite3.Connection]:
    """Another connection to the file, holding the write lock until the test commits."""
    conn = sqlite3.connect(store.path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE executions SET labels = '{}' WHERE id = 'seen'")
    yield conn
    if conn.in_transaction:
        conn.execute("ROLLBACK")
    conn.close()


async def _until_waiting(task: asyncio.Task[object]) -> None:
    """Let the task run to where it waits for the lock (it has tried at least once)."""
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()


async def test_a_transaction_waits_for_the_lock_while_reads_go_on(
    store: SQLiteStore, other_writer: sqlite3.Connection
) -> None:
    writing = asyncio.create_task(store.put_definition(definition("other")))
    await _until_waiting(writing)
    # The loop is free: a read of the same store is answered while the write waits.
    assert (await store.get_execution("seen")).id == "seen"
    assert not writing.done()
    other_writer.execute("COMMIT")
    assert (await writing).name == "other"
    assert (await store.find_definition("other")).id == "def-other-1"


async def test_a_single_statement_write_waits_for_the_lock_too(
    store: SQLiteStore, other_writer: sqlite3.Connection
) -> None:
    creating = asyncio.create_task(store.create_execution(execution("new", key="k")))
    await _until_waiting(creating)
    page, _ = await store.list_executions(ExecutionFilter())
    assert [e.id for e in page] == ["seen"]
    other_writer.execute("COMMIT")
    created, fresh = await creating
    assert fresh and created.id == "new"
    # The key is taken once: a second create with it finds the first execution.
    again, fresh = await store.create_execution(execution("other", key="k"))
    assert (again.id, fresh) == ("new", False)


async def test_a_lock_held_too_long_is_a_store_error_and_the_store_still_works(
    store: SQLiteStore, other_writer: sqlite3.Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_busy, "BUSY_TIMEOUT", 0.05)
    with pytest.raises(StoreError, match="database is locked"):
        await store.put_definition(definition("other"))
    with pytest.raises(StoreError, match="database is locked"):
        await store.create_execution(execution("new"))
    other_writer.execute("COMMIT")
    await store.put_definition(definition("other"))
    assert (await store.create_execution(execution("new")))[1]


async def test_a_write_cancelled_while_it_waits_leaves_the_store_usable(
    store: SQLiteStore, other_writer: sqlite3.Connection
) -> None:
    writing = asyncio.create_task(store.put_definition(definition("other")))
    await _until_waiting(writing)
    writing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writing
    other_writer.execute("COMMIT")
    await store.put_definition(definition("third"))
    assert {d.name for d in await store.list_definitions()} == {"wf", "third"}


async def test_opening_waits_for_another_connection_that_holds_the_file(tmp_path: Path) -> None:
    # Several server processes opening one new file at once (serve --workers N): one of them
    # is still writing it while another turns on WAL, which SQLite refuses at once
    # (SQLITE_BUSY, without its busy handler) rather than wait. Opening waits for the file.
    path = tmp_path / "new.db"
    first = SQLiteStore(path)
    await first.open()
    await first.close()
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA journal_mode = DELETE")  # as a file no store opened yet is
    other.execute("BEGIN IMMEDIATE")
    other.execute("CREATE TABLE held (x)")
    release = threading.Timer(0.3, other.execute, ("COMMIT",))
    release.start()
    store = SQLiteStore(path)
    try:
        await store.open()
        await store.put_definition(definition())
    finally:
        release.join()
        await store.close()
        other.close()
    mode = sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"
