"""The SQLite store's durability setting: NORMAL by default, FULL when asked for."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrion.engine.facade import Engine
from orchestrion.errors import ConfigurationError
from orchestrion.settings import Settings
from orchestrion.store.sql.sqlite import SQLiteStore

HELLO = {"name": "hello", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
FULL, NORMAL = 2, 1  # what PRAGMA synchronous reads back


async def _synchronous_of(engine: Engine) -> int:
    store = engine.store
    while not isinstance(store, SQLiteStore):  # an encrypting wrapper, when keys are set
        store = store.inner  # type: ignore[attr-defined]
    async with store._connection() as conn:
        row = await conn.row("PRAGMA synchronous")
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize(("setting", "expected"), [(None, NORMAL), ("full", FULL)])
async def test_the_engine_commits_with_the_durability_asked_for(
    tmp_path: Path, setting: str | None, expected: int
) -> None:
    settings = Settings() if setting is None else Settings(sqlite_synchronous=setting)
    async with Engine(f"sqlite:///{tmp_path / 'e.db'}", settings=settings) as engine:
        assert (await engine.run(HELLO)).ok
        assert await _synchronous_of(engine) == expected


def test_the_environment_variable_sets_it_and_a_wrong_value_is_named(tmp_path: Path) -> None:
    script = (
        "import asyncio\n"
        "from orchestrion.engine.facade import Engine\n"
        "from tests.integration.test_sqlite_durability import HELLO, _synchronous_of\n"
        "async def go():\n"
        f"    async with Engine('sqlite:///{tmp_path / 'v.db'}') as engine:\n"
        "        assert (await engine.run(HELLO)).ok\n"
        "        print(await _synchronous_of(engine))\n"
        "asyncio.run(go())\n"
    )
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "ORCHESTRION_SQLITE_SYNCHRONOUS": "full", "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(FULL)
    with pytest.raises(ValidationError, match="sqlite_synchronous"):
        Settings(sqlite_synchronous="off")  # type: ignore[arg-type]


def test_the_store_refuses_a_level_it_does_not_know(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="'normal' or 'full'"):
        SQLiteStore(tmp_path / "x.db", synchronous="off")  # type: ignore[arg-type]
