"""What the integration suites share: ``store``, each store adapter in turn (in memory,
SQLite, PostgreSQL), opened on a fresh database; ``env_keys``, a fresh encryption key ring in
the environment."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from orchestrion.governance.encryption import KeyRing
from orchestrion.store.base import Store
from orchestrion.store.memory import MemoryStore
from orchestrion.store.sql.postgres import PostgresStore
from orchestrion.store.sql.sqlite import SQLiteStore


@pytest.fixture(params=["memory", "sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    adapter: Store
    if request.param == "memory":
        adapter = MemoryStore()
    elif request.param == "sqlite":
        adapter = SQLiteStore(tmp_path / "db" / "s.db")
    else:
        adapter = PostgresStore(request.getfixturevalue("postgres_url"))
    await adapter.open()
    try:
        yield adapter
    finally:
        await adapter.close()


@pytest.fixture
def env_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A key ring of one fresh key, as ``ORCHESTRION_ENCRYPTION_KEYS`` holds it."""
    line = f"k1:{KeyRing.generate_key()}"
    # Orchestrators, workers and the API read the ring from the environment, as processes do.
    monkeypatch.setenv("ORCHESTRION_ENCRYPTION_KEYS", line)
    yield line
