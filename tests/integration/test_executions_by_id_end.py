"""Executions found by the last characters of their id through an index, on SQLite and
PostgreSQL: ids made in the same minute share their first characters, so users type the end
(the command line resolves a part of an id by both ends). Without the index every lookup read
every execution's id."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from tests.integration.test_store_contract import (
    definition,
    execution,
    postgres_at,
    postgres_plan,
)

from orchestrion.engine.ids import new_record_id
from orchestrion.store import migrate
from orchestrion.store.base import ExecutionFilter
from orchestrion.store.sql.postgres import PostgresStore
from orchestrion.store.sql.sqlite import SQLiteStore

_OLD_ROW = (
    "INSERT INTO executions (id, definition_id, status, phase, inputs, overrides, labels,"
    " created_at) VALUES ('{id}', '{d}', 'completed', 'run', '{{}}', '{{}}', '{{}}', 1)"
)


async def _ids(store: Any, suffix: str) -> set[str]:
    page, _ = await store.list_executions(ExecutionFilter(id_suffix=suffix, limit=50))
    counted = sum((await store.count_executions(ExecutionFilter(id_suffix=suffix))).values())
    assert counted == len(page)
    return {e.id for e in page}


async def test_sqlite_finds_an_id_by_its_end_through_an_index(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "o.db")
    await store.open()
    try:
        await store.put_definition(definition())
        ids = [new_record_id() for _ in range(50)]
        for eid in ids:
            await store.create_execution(execution(eid))
        assert await _ids(store, ids[7][-6:]) == {ids[7]}
        assert await _ids(store, ids[7]) == {ids[7]}
        wanted = ExecutionFilter(id_suffix=ids[7][-6:], limit=50)
        where, params = store._execution_filter(wanted)
        async with store._connection() as conn:
            plan = await conn.rows(
                "EXPLAIN QUERY PLAN SELECT id FROM executions WHERE " + " AND ".join(where),
                params,
            )
        text = "\n".join(str(row[-1]) for row in plan)
        assert "ix_executions_id_reversed" in text and "SCAN executions" not in text, text
    finally:
        await store.close()


async def test_sqlite_rows_from_before_the_index_are_turned_round_and_found(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    migrate.upgrade(f"sqlite:///{path}", "0012")
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO definitions (id, name, version, spec, content_hash, source_format,"
            " dialect, created_at) VALUES ('d1', 'wf', '1', '{}', 'h', 'yaml', 'canonical', 0)"
        )
        conn.execute(_OLD_ROW.format(id="old-execution-abc123", d="d1"))
        conn.commit()
    finally:
        conn.close()
    store = SQLiteStore(path)
    await store.open()  # upgrades to the head
    try:
        assert migrate.current_revision(path) == migrate.HEAD_REVISION
        assert await _ids(store, "abc123") == {"old-execution-abc123"}
        async with store._connection() as conn2:
            row = await conn2.row("SELECT id_reversed FROM executions")
        assert row is not None and row[0] == "321cba-noitucexe-dlo"
        # A row an older process writes after the upgrade has no reversed id: still found.
        async with store._transaction() as tx:
            await tx.run(_OLD_ROW.format(id="written-by-old-code-abc123", d="d1"))
        assert await _ids(store, "abc123") == {
            "old-execution-abc123",
            "written-by-old-code-abc123",
        }
    finally:
        await store.close()


async def test_postgres_finds_an_id_by_its_end_through_an_index(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        await store.put_definition(definition())
        ids = [new_record_id() for _ in range(200)]
        for eid in ids:
            await store.create_execution(execution(eid))
        assert await _ids(store, ids[7][-6:]) == {ids[7]}
        async with store._transaction() as tx:  # as a process older than the index writes
            await tx.run(_OLD_ROW.format(id="written-by-old-code-" + ids[7][-6:], d="def-wf-1"))
        assert await _ids(store, ids[7][-6:]) == {ids[7], "written-by-old-code-" + ids[7][-6:]}
        text = await postgres_plan(store, ExecutionFilter(id_suffix=ids[7][-6:], limit=50))
        assert "ix_executions_id_reversed" in text and "Seq Scan" not in text, text
        assert "Index Cond" in text, text  # the range bounds the scan, not a filter after it
    finally:
        await store.close()


async def test_postgres_rows_from_before_the_index_are_turned_round(postgres_url: str) -> None:
    await postgres_at(
        postgres_url,
        "0012",
        "INSERT INTO definitions (id, name, version, spec, content_hash, source_format, dialect,"
        " created_at) VALUES ('d1', 'wf', '1', '{}', 'h', 'yaml', 'canonical', 0)",
        _OLD_ROW.format(id="old-execution-abc123", d="d1"),
    )
    store = PostgresStore(postgres_url)
    await store.open()  # upgrades to the head
    try:
        async with store._connection() as conn2:
            row = await conn2.row("SELECT id_reversed FROM executions")
        assert row is not None and row[0] == "321cba-noitucexe-dlo"
        assert await _ids(store, "abc123") == {"old-execution-abc123"}
    finally:
        await store.close()
