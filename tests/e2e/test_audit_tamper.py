"""The tamper corpus against real databases: a real run on a SQLite file and on PostgreSQL,
then raw SQL edits, deletes, inserts, re-numbers, re-signs and truncates the trail. Each is
detected and located by the library, by ``orchestrion audit verify`` (a subprocess) and by
``GET /v1/audit/verify``. Exports verify offline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest

from audit_helpers import AUDIT_ENV, KEY, OTHER_KEY, Trail, audited, recorded_trail
from orchestrion.api import create_app
from orchestrion.engine.facade import Engine
from orchestrion.governance.audit_chain import ChainHead, seal
from orchestrion.settings import load_settings
from orchestrion.store.audit import AuditSigner

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
FLOW = {
    "name": "tampered",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
            {"id": "c", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


def orchestrion(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    full_env.update({"COLUMNS": "200", **AUDIT_ENV, **(env or {})})
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env)


@pytest.fixture(params=["sqlite", "postgres"])
async def trail(request: pytest.FixtureRequest, tmp_path: Path) -> Trail:
    url, records = await recorded_trail(request, tmp_path, FLOW, 2, audited())
    assert len(records) >= 20
    return Trail(url, request.param, records)


Tamper = Callable[[Trail], Awaitable[None]]


async def edit(t: Trail) -> None:
    await t.sql(("UPDATE audit SET actor = 'mallory' WHERE seq = $1", (3,)))


async def delete_middle(t: Trail) -> None:
    await t.sql(("DELETE FROM audit WHERE seq = $1", (4,)))


async def insert_forged(t: Trail) -> None:
    """Make room at seq 4 (renumbering the rest) and put a forged record there."""
    third = t.records[2]
    await t.sql(
        ("UPDATE audit SET seq = -seq WHERE seq >= $1", (4,)),
        ("UPDATE audit SET seq = 1 - seq WHERE seq < $1", (0,)),
        (
            "INSERT INTO audit (seq, at, action, actor, execution_id, node_id, outcome, details,"
            " prev_hash, key_id, hash) VALUES (4, 1.0, 'api.cancel_workflow', 'key:00000000',"
            " NULL, NULL, '202', NULL, $1, 'k1', $2)",
            (third["hash"], "f" * 64),
        ),
    )


async def swap_seqs(t: Trail) -> None:
    await t.sql(
        ("UPDATE audit SET seq = -1 WHERE seq = $1", (3,)),
        ("UPDATE audit SET seq = 3 WHERE seq = $1", (4,)),
        ("UPDATE audit SET seq = 4 WHERE seq = $1", (-1,)),
    )


async def resign_with_a_wrong_key(t: Trail) -> None:
    second, third = t.records[1], t.records[2]
    fields = {k: v for k, v in third.items() if k not in {"seq", "prev_hash", "hash", "key_id"}}
    fields["actor"] = "mallory"
    forged = seal(fields, ChainHead(second["seq"], second["hash"]), OTHER_KEY, "k1")
    await t.sql(
        ("UPDATE audit SET actor = 'mallory', hash = $1 WHERE seq = $2", (forged["hash"], 3))
    )


async def unknown_key(t: Trail) -> None:
    await t.sql(("UPDATE audit SET key_id = 'k9' WHERE seq = $1", (5,)))


def _details_text(t: Trail, seq: int) -> str:
    details = t.records[seq - 1]["details"]
    assert isinstance(details, dict) and "event_id" in details, t.records[seq - 1]
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


async def duplicate_key(t: Trail) -> None:
    """The stored text says another event id first; a JSON reader keeps the last one."""
    text = '{"event_id":"forged",' + _details_text(t, 3)[1:]
    await t.sql(("UPDATE audit SET details = $1 WHERE seq = $2", (text, 3)))


async def respelled(t: Trail) -> None:
    """The same value written another way: not the text that was signed."""
    text = _details_text(t, 3).replace('"event_id"', '"\\u0065vent_id"')
    await t.sql(("UPDATE audit SET details = $1 WHERE seq = $2", (text, 3)))


async def truncate(t: Trail) -> None:
    await t.sql(("DELETE FROM audit WHERE seq > $1", (len(t.records) - 2,)))


CORPUS: list[tuple[Tamper, str, Callable[[Trail], int]]] = [
    (edit, "edited", lambda t: 3),
    (delete_middle, "deleted", lambda t: 4),
    (insert_forged, "inserted", lambda t: 4),
    (swap_seqs, "reordered", lambda t: 3),
    (resign_with_a_wrong_key, "edited", lambda t: 3),
    (unknown_key, "unknown_key", lambda t: 5),
    (truncate, "truncated", lambda t: len(t.records) - 1),
    (duplicate_key, "edited", lambda t: 3),
    (respelled, "edited", lambda t: 3),
]


@pytest.mark.parametrize(("tamper", "kind", "where"), CORPUS, ids=[c[0].__name__ for c in CORPUS])
async def test_tampering_is_detected_and_located_everywhere(
    trail: Trail, tamper: Tamper, kind: str, where: Callable[[Trail], int]
) -> None:
    seq = where(trail)
    await tamper(trail)

    async with Engine(trail.url, governance=audited()) as engine:
        result = await engine.audit.verify()
    assert not result.ok
    first = result.breaks[0]
    assert (first.kind, first.seq) == (kind, seq), first
    assert result.verified_up_to == seq - 1

    # The CLI once per database for most tampering (a process start is not free).
    if trail.kind == "sqlite" or tamper in (edit, swap_seqs):
        cli = orchestrion("audit", "verify", "--db", trail.url)
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert f"broken at seq {seq} ({kind})" in cli.stderr

    settings = load_settings(database_url=trail.url, rate_limit_per_second=0, shutdown_grace=0)
    engine = Engine(settings=settings, governance=audited())
    await engine.start()
    try:
        app = create_app(engine, settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
                response = await client.get("/v1/audit/verify")
    finally:
        await engine.stop(0)
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False
    assert (body["breaks"][0]["kind"], body["breaks"][0]["seq"]) == (kind, seq)


async def test_an_untouched_trail_verifies_and_its_export_verifies_offline(
    trail: Trail, tmp_path: Path
) -> None:
    ok = orchestrion("audit", "verify", "--db", trail.url)
    assert ok.returncode == 0, ok.stderr
    assert f"{len(trail.records)} record(s)" in ok.stdout
    head = f"{trail.records[-1]['seq']}:{trail.records[-1]['hash']}"
    assert f"head {head}" in ok.stdout

    export = tmp_path / "trail.jsonl"
    done = orchestrion("audit", "export", "--db", trail.url, "--output", str(export))
    assert done.returncode == 0, done.stderr
    lines = export.read_text().splitlines()
    assert [json.loads(line) for line in lines] == trail.records
    assert orchestrion("audit", "verify", "--file", str(export)).returncode == 0

    listed = orchestrion("audit", "list", "--db", trail.url, "--action", "execution.", "--json")
    assert [r["action"] for r in json.loads(listed.stdout)] == [
        "execution.started",
        "execution.completed",
    ] * 2

    # Edit the export: found offline. Drop its last line: found against the noted head.
    edited = [json.loads(line) for line in lines]
    edited[5]["outcome"] = "failed"
    export.write_text("".join(json.dumps(r) + "\n" for r in edited))
    broken = orchestrion("audit", "verify", "--file", str(export))
    assert broken.returncode == 1 and "broken at seq 6 (edited)" in broken.stderr
    export.write_text("".join(line + "\n" for line in lines[:-1]))
    assert orchestrion("audit", "verify", "--file", str(export)).returncode == 0
    short = orchestrion("audit", "verify", "--file", str(export), "--expect-head", head)
    assert short.returncode == 1 and "(truncated)" in short.stderr

    without_key = orchestrion(
        "audit", "verify", "--db", trail.url, env={"ORCHESTRION_AUDIT_KEYS": ""}
    )
    assert without_key.returncode == 2 and "ORCHESTRION_AUDIT_KEYS is not set" in without_key.stderr


async def test_truncation_with_the_head_rewound(trail: Trail) -> None:
    last, kept = trail.records[-1], trail.records[-3]
    await trail.sql(
        ("DELETE FROM audit WHERE seq > $1", (kept["seq"],)),
        ("UPDATE audit_head SET seq = $1, hash = $2", (kept["seq"], kept["hash"])),
    )
    # Rewinding the head without the key breaks its signature.
    rewound = orchestrion("audit", "verify", "--db", trail.url)
    assert rewound.returncode == 1
    assert f"broken at seq {kept['seq'] + 1} (truncated)" in rewound.stderr
    assert "audit_head" in rewound.stderr

    # A head row copied when it was current (made here with the key) holds for the chain, but
    # the journal still has the transitions whose records went; the noted head also sees it.
    copied = AuditSigner(KEY, "k1").head(kept["seq"], kept["hash"])
    await trail.sql(("UPDATE audit_head SET mac = $1", (copied.mac,)))
    journal = orchestrion("audit", "verify", "--db", trail.url)
    assert journal.returncode == 1
    assert f"broken at seq {kept['seq'] + 1} (missing)" in journal.stderr
    assert "2 transition(s) of executions the trail covers have no record" in journal.stderr
    noted = orchestrion(
        "audit", "verify", "--db", trail.url, "--expect-head", f"{last['seq']}:{last['hash']}"
    )
    assert noted.returncode == 1
    assert f"broken at seq {kept['seq'] + 1} (truncated)" in noted.stderr

    await trail.sql(("DELETE FROM audit_head WHERE id = $1", (1,)))
    gone = orchestrion("audit", "verify", "--db", trail.url)
    assert gone.returncode == 1 and "audit_head" in gone.stderr and "missing" in gone.stderr
