"""A part of an execution id typed without its dashes finds the execution: its first or last
characters across a dash (``01a25256f8c3``, ``910bca7aa8f71419``), or all 32 hex digits. On
SQLite and PostgreSQL through the same indexes as a part typed with its dashes (no row read
one by one), through the API's ``id_prefix``/``id_suffix``, and on the command line, locally
and with ``--server``; a part several ids share is still refused with the candidates."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from test_api import serving
from test_api_scaleout import http_server
from tests.integration.test_store_contract import definition, execution, postgres_plan
from typer.testing import CliRunner

from orchestrion.cli.app import app as cli
from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.engine.facade import Engine
from orchestrion.engine.ids import new_record_id
from orchestrion.settings import load_settings
from orchestrion.store.base import ExecutionFilter
from orchestrion.store.sql.postgres import PostgresStore
from orchestrion.store.sql.sqlite import SQLiteStore

QUICK = {"name": "quick", "dag": {"nodes": [{"id": "only", "handler": "noop"}]}}
# Two ids with the same first 12 digits, the dash after the 8th: ``0123abcdef01`` is both.
TWINS = ["0123abcd-ef01-7000-8000-00000000000a", "0123abcd-ef01-7000-8000-00000000000b"]


def _bare(execution_id: str) -> str:
    return execution_id.replace("-", "")


def _parts(execution_id: str) -> list[ExecutionFilter]:
    """The filters a user's dashless parts of ``execution_id`` make: first 24 digits (across
    every dash; ids made in one millisecond share 12), last 16 (across the last), all 32,
    some of the dashes left in."""
    bare = _bare(execution_id)
    return [
        ExecutionFilter(id_prefix=bare[:24], limit=50),
        ExecutionFilter(id_suffix=bare[-16:], limit=50),
        ExecutionFilter(id_prefix=bare, limit=50),
        ExecutionFilter(id_suffix=bare, limit=50),
        ExecutionFilter(id_prefix=execution_id[:13] + bare[12:24], limit=50),
    ]


async def _found(store: Any, wanted: ExecutionFilter) -> set[str]:
    page, _ = await store.list_executions(wanted)
    return {e.id for e in page}


async def _fill(store: Any) -> list[str]:
    await store.put_definition(definition())
    ids = [new_record_id() for _ in range(40)]
    for eid in [*ids, *TWINS]:
        await store.create_execution(execution(eid))
    return ids


async def test_sqlite_finds_dashless_parts_through_its_indexes(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "o.db")
    await store.open()
    try:
        ids = await _fill(store)
        for wanted in _parts(ids[7]):
            assert await _found(store, wanted) == {ids[7]}, wanted
            where, params = store._execution_filter(wanted)
            async with store._connection() as conn:
                plan = await conn.rows(
                    "EXPLAIN QUERY PLAN SELECT id FROM executions WHERE " + " AND ".join(where),
                    params,
                )
            text = "\n".join(str(row[-1]) for row in plan)
            assert "SCAN executions" not in text, (wanted, text)
        assert await _found(store, ExecutionFilter(id_prefix="0123abcdef01")) == set(TWINS)
    finally:
        await store.close()


async def test_postgres_finds_dashless_parts_through_its_indexes(postgres_url: str) -> None:
    store = PostgresStore(postgres_url)
    await store.open()
    try:
        ids = await _fill(store)
        for wanted in _parts(ids[7]):
            assert await _found(store, wanted) == {ids[7]}, wanted
            text = await postgres_plan(store, wanted)
            assert "Seq Scan" not in text and "Index Cond" in text, (wanted, text)
        assert await _found(store, ExecutionFilter(id_prefix="0123abcdef01")) == set(TWINS)
    finally:
        await store.close()


async def test_the_api_filters_by_dashless_parts(tmp_path: Path) -> None:
    async with serving(tmp_path) as api:
        done = (await api.engine.run(QUICK)).execution_id
        other = (await api.engine.run(QUICK)).execution_id
        bare = _bare(done)
        for params in ({"id_prefix": bare[:24].upper()}, {"id_suffix": bare[-16:]}):
            answer = await api.client.get("/v1/workflows", params=params)
            assert answer.status_code == 200, answer.text
            assert [item["execution_id"] for item in answer.json()["items"]] == [done], params
        assert other != done


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, list(args))


def _resolves(where: list[str], done: str) -> None:
    bare = _bare(done)
    for part in (bare[:24], bare[-16:], bare[-6:], bare.upper()):
        ran = _cli("status", part, *where, "--json")
        assert ran.exit_code == 0, (part, ran.output)
        assert done in ran.output, part


def test_the_command_line_resolves_dashless_parts(tmp_path: Path) -> None:
    db = tmp_path / "cli.db"

    async def prepare() -> str:
        async with Engine(f"sqlite:///{db}") as engine:
            done = (await engine.run(QUICK)).execution_id
            record = await engine.store.get_execution(done)
            for twin in TWINS:
                await engine.store.create_execution(execution(twin, record.definition_id))
            return done

    done = asyncio.run(prepare())
    _resolves(["--db", str(db)], done)
    ran = _cli("status", "0123abcdef01", "--db", str(db))
    assert ran.exit_code == EXIT_INVALID, ran.output
    assert "ambiguous" in ran.output and all(twin in ran.output for twin in TWINS)

    settings = load_settings(database_url=f"sqlite:///{db}")
    with http_server(settings) as url:
        _resolves(["--server", url], done)
        ran = _cli("status", "0123abcdef01", "--server", url)
        assert ran.exit_code == EXIT_INVALID, ran.output
        assert "ambiguous" in ran.output and all(twin in ran.output for twin in TWINS)
