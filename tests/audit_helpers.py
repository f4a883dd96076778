"""Audit keys and governance for the audit trail tests, and a trail of real runs on a
SQLite file or PostgreSQL, with raw SQL on it."""

from __future__ import annotations

import base64
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from orchestrion.governance.runtime import Governance

__all__ = ["AUDIT_ENV", "KEY", "OTHER_KEY", "Trail", "audited", "recorded_trail", "unaudited"]

KEY = b"K" * 32
OTHER_KEY = b"O" * 32
AUDIT_ENV = {"ORCHESTRION_AUDIT_KEYS": "k1:" + base64.b64encode(KEY).decode()}


def audited(path: str | Path | None = None) -> Governance:
    """The shipped policy (or ``path``) with audit key ``k1``."""
    return Governance.load(path, environ=dict(AUDIT_ENV))


def unaudited() -> Governance:
    return Governance.load(None, environ={})


@dataclass
class Trail:
    """A database holding the trail of a real run, and raw SQL on it."""

    url: str
    kind: str
    records: list[dict[str, Any]]

    async def sql(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        """Run ``statements`` (PostgreSQL's ``$1`` placeholders) in one transaction."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(self.url.removeprefix("sqlite:///"))
            try:
                for statement, params in statements:
                    conn.execute(statement.replace("$1", "?").replace("$2", "?"), params)
                conn.commit()
            finally:
                conn.close()
            return
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.url)
        try:
            async with conn.transaction():
                for statement, params in statements:
                    await conn.execute(statement, *params)
        finally:
            await conn.close()


async def recorded_trail(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    flow: dict[str, Any],
    runs: int,
    governance: Governance,
) -> tuple[str, list[dict[str, Any]]]:
    """The database ``request.param`` names (``sqlite``: a file in ``tmp_path``, else the
    test's PostgreSQL) after ``runs`` runs of ``flow``: its URL and its trail's records."""
    from orchestrion.engine.facade import Engine
    from orchestrion.store.audit import AuditFilter

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'trail.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    async with Engine(url, governance=governance) as engine:
        for _ in range(runs):
            await engine.run(flow)
        records = [r.chain_fields() for r in await engine.audit.list(AuditFilter(limit=1000))]
    return url, records
