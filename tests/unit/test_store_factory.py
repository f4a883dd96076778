"""``open_store`` picks the adapter from the URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.store.factory import open_store
from orchestrion.store.memory import MemoryStore
from orchestrion.store.sql.postgres import PostgresStore
from orchestrion.store.sql.sqlite import SQLiteStore, url_to_sqlite_path


def test_memory() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///state.db", Path("state.db")),
        ("sqlite:////tmp/abs/state.db", Path("/tmp/abs/state.db")),
        ("sqlite:///data/state.db?timeout=3", Path("data/state.db")),
        ("state.db", Path("state.db")),
        ("/var/lib/orchestrion/state.db", Path("/var/lib/orchestrion/state.db")),
    ],
)
def test_sqlite(url: str, path: Path) -> None:
    store = open_store(url)
    assert isinstance(store, SQLiteStore)
    assert store.path == path


@pytest.mark.parametrize(
    ("url", "driver_url"),
    [
        ("postgresql://u@h/db", "postgresql+asyncpg://u@h/db"),
        ("postgresql+asyncpg://u:pw@h:5433/db", "postgresql+asyncpg://u:pw@h:5433/db"),
        ("postgres://h/db", "postgresql+asyncpg://h/db"),
        ("PostgreSQL://h/db", "postgresql+asyncpg://h/db"),
    ],
)
def test_postgresql(url: str, driver_url: str) -> None:
    store = open_store(url)
    assert isinstance(store, PostgresStore)
    assert store.url == driver_url
    assert "pw" not in repr(store)


def test_postgresql_other_drivers_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not a PostgreSQL URL"):
        open_store("postgresql+psycopg2://h/db")


@pytest.mark.parametrize("url", ["redis://localhost", "sqlite://", "sqlite:///:memory:"])
def test_unusable_urls(url: str) -> None:
    with pytest.raises(ConfigurationError):
        open_store(url)


def test_url_to_sqlite_path() -> None:
    assert url_to_sqlite_path("sqlite:///x.db") == "x.db"
    with pytest.raises(ConfigurationError):
        url_to_sqlite_path("mysql:///x.db")
