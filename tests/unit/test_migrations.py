"""The Alembic migrations: they build exactly ``schema.metadata``, and ship with the package."""

from __future__ import annotations

import sqlite3
import tomllib
from fnmatch import fnmatch
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, inspect, pool

from orchestrion.store import migrate
from orchestrion.store.schema import metadata

ROOT = Path(__file__).resolve().parents[2]


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def test_head_revision_is_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == migrate.HEAD_REVISION


def test_current_revision(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    assert migrate.current_revision(path) is None
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    assert migrate.current_revision(path) is None
    migrate.upgrade(sqlite_url(path))
    assert migrate.current_revision(path) == migrate.HEAD_REVISION


def test_migrations_match_the_schema_metadata(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    migrate.upgrade(sqlite_url(path))
    engine = create_engine(sqlite_url(path), poolclass=pool.NullPool)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), metadata)
            indexes = {ix["name"] for ix in inspect(conn).get_indexes("events")}
    finally:
        engine.dispose()
    assert diff == []
    assert "ix_events_execution_id_seq" in indexes


def schema_of(path: Path) -> list[tuple[str, str]]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute(
            # sqlite_sequence outlives the AUTOINCREMENT table that made it (events before
            # 0004): SQLite cannot drop it, and an empty one changes nothing.
            "SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL"
            " AND name != 'sqlite_sequence' ORDER BY name"
        ).fetchall()
    finally:
        conn.close()
    return [(name, "\n".join(line.rstrip() for line in sql.split("\n"))) for name, sql in rows]


def test_rendered_sqlite_script_is_up_to_date() -> None:
    assert migrate.SQLITE_HEAD_SCRIPT.read_text() == migrate.render_sqlite_script(), (
        "migrations changed: run `python -m orchestrion.store.migrate` to re-render the script"
    )


def test_rendered_script_builds_what_alembic_builds(tmp_path: Path) -> None:
    by_alembic, by_script = tmp_path / "alembic.db", tmp_path / "script.db"
    migrate.upgrade(sqlite_url(by_alembic))
    migrate.create_sqlite_schema(by_script)
    assert schema_of(by_script) == schema_of(by_alembic)
    assert migrate.current_revision(by_script) == migrate.HEAD_REVISION


def test_rendered_script_refuses_a_file_with_tables(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    migrate.create_sqlite_schema(path)
    with pytest.raises(sqlite3.OperationalError, match="already exists"):
        migrate.create_sqlite_schema(path)
    assert migrate.current_revision(path) == migrate.HEAD_REVISION


def test_downgrade_and_upgrade_again(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    url = sqlite_url(path)
    migrate.upgrade(url)
    migrate.upgrade(url)  # already at head: nothing to do
    from alembic import command

    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url)
    command.downgrade(config, "base")
    conn = sqlite3.connect(path)
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert tables.isdisjoint({"definitions", "executions", "node_runs", "events"})
    migrate.upgrade(url)
    assert migrate.current_revision(path) == migrate.HEAD_REVISION


async def test_an_0003_file_keeps_its_journal_through_0004(tmp_path: Path) -> None:
    """0004 copies events and node runs into their lean tables: nothing is lost, node runs
    keep their insertion order, and seqs used by events purged before stay used."""
    from orchestrion.store.sql.sqlite import SQLiteStore

    path = tmp_path / "old.db"
    migrate.upgrade(sqlite_url(path), "0003")
    conn = sqlite3.connect(path)
    try:
        conn.execute(
            "INSERT INTO definitions VALUES ('d', 'n', '1', '{}', 'h', 'json', 'native', NULL, 0)"
        )
        conn.execute(
            "INSERT INTO executions (id, definition_id, status, phase, inputs, overrides,"
            " labels, created_at) VALUES ('e', 'd', 'running', 'run', '{}', '{}', '{}', 0)"
        )
        # Node "z" first, then "a": insertion order is not key order.
        for seq, node_id in ((1, "z"), (2, "a"), (3, "z"), (4, "purged")):
            conn.execute(
                "INSERT INTO events (seq, id, execution_id, node_id, type, attempt, at)"
                " VALUES (?, ?, 'e', ?, 'node.queued', 1, 0)",
                (seq, f"ev{seq}", node_id),
            )
        conn.execute("DELETE FROM events WHERE seq = 4")  # the newest, purged
        for node_id in ("z", "a"):
            conn.execute(
                "INSERT INTO node_runs (execution_id, node_id, state, attempt, output)"
                " VALUES ('e', ?, 'completed', 1, '1')",
                (node_id,),
            )
        conn.commit()
    finally:
        conn.close()
    migrate.upgrade(sqlite_url(path))
    store = SQLiteStore(path)
    await store.open()
    try:
        assert [r.node_id for r in await store.get_node_runs("e")] == ["z", "a"]
        assert [e.seq for e in await store.list_events("e")] == [1, 2, 3]
        assert [e.seq for e in await store.list_events()] == [1, 2, 3]  # no mark shown
        assert await store.get_outputs("e") == {"z": 1, "a": 1}
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        (kept_used,) = conn.execute("SELECT max(seq) FROM events").fetchone()
        conn.execute(
            "INSERT INTO events (id, execution_id, type, attempt, at) VALUES ('n', 'e', 't', 1, 0)"
        )
        (fresh,) = conn.execute("SELECT seq FROM events WHERE id = 'n'").fetchone()
    finally:
        conn.close()
    assert (kept_used, fresh) == (4, 5)


def test_package_data_ships_every_migration_file() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["orchestrion"]
    package = ROOT / "src" / "orchestrion"
    files = [
        p.relative_to(package).as_posix()
        for p in migrate.MIGRATIONS_DIR.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert files
    unshipped = [f for f in files if not any(fnmatch(f, g) for g in globs)]
    assert unshipped == []
