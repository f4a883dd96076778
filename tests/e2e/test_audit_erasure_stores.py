"""The trail's store-level checks on SQLite and PostgreSQL alike: emptying the trail, cutting
its newest records with a copied head, deleting in the middle, each found by the library and
by ``orchestrion audit verify --db`` (a subprocess) against the journal, with no anchor; the
anchor written by engines on PostgreSQL catches what the journal cannot. And no false alarm
while engines commit during a verify."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from audit_helpers import AUDIT_ENV, KEY, Trail, audited, recorded_trail
from orchestrion.engine.facade import Engine
from orchestrion.errors import PermanentNodeError
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.runtime import Governance
from orchestrion.handlers.base import NodeContext
from orchestrion.handlers.python import function
from orchestrion.store.audit import AuditSigner
from orchestrion.store.audit_log import AuditLog
from orchestrion.store.factory import open_store

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
FLOW = {
    "name": "erased",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


def verify_cli(url: str, policy: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    env.pop("ORCHESTRION_GOVERNANCE_FILE", None)
    env.update({"COLUMNS": "250", **AUDIT_ENV})
    if policy is not None:
        env["ORCHESTRION_GOVERNANCE_FILE"] = str(policy)
    return subprocess.run(
        [*CLI, "audit", "verify", "--db", url], capture_output=True, text=True, env=env, timeout=120
    )


class Db(Trail):
    """The trail, and the library's verdict on it."""

    async def rewind_to(self, seq: int) -> None:
        digest = self.records[seq - 1]["hash"]
        head = AuditSigner(KEY, "k1").head(seq, digest)
        await self.sql(
            ("DELETE FROM audit WHERE seq > $1", (seq,)),
            ("UPDATE audit_head SET seq = $1, hash = $2", (seq, digest)),
            ("UPDATE audit_head SET mac = $1", (head.mac,)),
        )

    async def verify(self) -> list[tuple[str, int]]:
        store = open_store(self.url)
        await store.open()
        try:
            result = await AuditLog(audited(), lambda: store).verify()
        finally:
            await store.close()
        assert result.ok == (not result.breaks)
        return [(b.kind, b.seq) for b in result.breaks]


def anchored_policy(tmp_path: Path, interval: float = 60) -> Path:
    policy = tmp_path / "governance.yaml"
    policy.write_text(
        f"version: 1\naudit:\n  anchor:\n    file: {tmp_path / 'anchor.jsonl'}\n"
        f"    interval_seconds: {interval}\n"
    )
    return policy


@pytest.fixture(params=["sqlite", "postgres"])
async def db(request: pytest.FixtureRequest, tmp_path: Path) -> Db:
    governance = audited(anchored_policy(tmp_path))
    url, records = await recorded_trail(request, tmp_path, FLOW, 3, governance)
    return Db(url, request.param, records)


def executions(db: Db) -> list[str]:
    seen: list[str] = []
    for record in db.records:
        if record["execution_id"] and record["execution_id"] not in seen:
            seen.append(record["execution_id"])
    return seen


async def test_an_untouched_trail_verifies(db: Db, tmp_path: Path) -> None:
    assert await db.verify() == []
    done = verify_cli(db.url, anchored_policy(tmp_path))
    assert done.returncode == 0, done.stderr
    assert "anchored: checkpoint of record" in done.stdout


async def test_emptying_the_trail_and_its_head(db: Db) -> None:
    await db.sql(("DELETE FROM audit", ()), ("DELETE FROM audit_head", ()))
    assert await db.verify() == [("truncated", 1)]
    cli = verify_cli(db.url)
    assert cli.returncode == 1
    assert "broken at seq 1 (truncated): the trail is empty but the journal holds" in cli.stderr


async def test_deleting_the_records_but_not_the_head(db: Db) -> None:
    await db.sql(("DELETE FROM audit", ()))
    assert await db.verify() == [("truncated", 1), ("truncated", 1)]
    assert verify_cli(db.url).returncode == 1


async def test_cutting_the_newest_records_with_a_copied_head(db: Db) -> None:
    kept = len(db.records) - 2
    await db.rewind_to(kept)
    assert await db.verify() == [("missing", kept + 1)]
    cli = verify_cli(db.url)
    assert cli.returncode == 1 and f"broken at seq {kept + 1} (missing)" in cli.stderr


async def test_deleting_in_the_middle(db: Db) -> None:
    await db.sql(("DELETE FROM audit WHERE seq = $1", (4,)))
    assert await db.verify() == [("deleted", 4), ("missing", len(db.records) + 1)]
    cli = verify_cli(db.url)
    assert cli.returncode == 1 and "broken at seq 4 (deleted)" in cli.stderr


async def test_a_trail_that_starts_after_seq_1(db: Db) -> None:
    """Audit records are never purged: a trail must start at record 1."""
    await db.sql(("DELETE FROM audit WHERE seq <= $1", (3,)))
    assert await db.verify() == [("deleted", 1)]
    cli = verify_cli(db.url)
    assert (
        cli.returncode == 1 and "broken at seq 1 (deleted): records 1..3 are missing" in cli.stderr
    )


async def test_cutting_whole_executions_needs_the_anchor(db: Db, tmp_path: Path) -> None:
    last = executions(db)[-1]
    kept = max(r["seq"] for r in db.records if r["execution_id"] != last)
    await db.rewind_to(kept)
    assert await db.verify() == []  # the journal cannot tell it from a trail turned off
    cli = verify_cli(db.url, anchored_policy(tmp_path))
    assert cli.returncode == 1
    assert f"broken at seq {kept + 1} (truncated)" in cli.stderr
    assert "anchor holds a checkpoint" in cli.stderr


async def test_no_false_alarm_while_engines_commit(db: Db, tmp_path: Path) -> None:
    """Verifying reads the anchor, then the journal, then the trail: transitions committed
    and checkpoints written meanwhile never show as missing records or a short trail."""
    governance = audited(anchored_policy(tmp_path, interval=0.01))
    async with Engine(db.url, governance=governance) as engine:
        stop = asyncio.Event()

        async def keep_running() -> None:
            while not stop.is_set():
                await asyncio.gather(*(engine.run(FLOW) for _ in range(3)))

        runner = asyncio.create_task(keep_running())
        try:
            for _ in range(8):
                result = await engine.audit.verify()
                assert result.ok, result.breaks
                assert result.anchor is not None and result.anchor["checkpoints"] > 0
                await asyncio.sleep(0)
        finally:
            stop.set()
            await runner


@function("t_audit_sealed_failure", replace=True)
def t_audit_sealed_failure(ctx: NodeContext, name: str) -> None:
    raise PermanentNodeError(f"no account for {name}")


async def test_the_journal_check_needs_no_encryption_key(tmp_path: Path) -> None:
    """Sealed journal data (a classified node's error) is not opened to check the trail: an
    engine whose encryption key was retired still verifies."""
    url = f"sqlite:///{tmp_path / 'sealed.db'}"
    flow = {
        "name": "sealed",
        "dag": {
            "nodes": [
                {
                    "id": "kyc",
                    "handler": "python",
                    "data_classification": "pii",
                    "config": {"function": "t_audit_sealed_failure", "params": {"name": "Ada"}},
                }
            ]
        },
    }
    keyed = {**AUDIT_ENV, "ORCHESTRION_ENCRYPTION_KEYS": f"e1:{KeyRing.generate_key()}"}
    async with Engine(url, governance=Governance.load(environ=keyed)) as engine:
        assert not (await engine.run(flow)).ok
    retired = {**AUDIT_ENV, "ORCHESTRION_ENCRYPTION_KEYS": f"e2:{KeyRing.generate_key()}"}
    async with Engine(url, governance=Governance.load(environ=retired)) as engine:
        result = await engine.audit.verify()
    assert result.ok, result.breaks
