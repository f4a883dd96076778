"""Erasing or rewinding the audit trail, with database access only, is detected: real
``orchestrion run`` processes write the trail and its anchor file, sqlite3 (or SQL on
PostgreSQL) tampers with the database, and ``orchestrion audit verify`` (a subprocess, no
flag) exits 1 naming the break. The anchor file itself forged, edited or removed is a break
too."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from audit_helpers import AUDIT_ENV, KEY
from orchestrion.governance.audit_chain import ChainHead
from orchestrion.store.audit import AuditSigner
from orchestrion.store.audit_anchor import Checkpoint

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "orchestrion.cli.app"]
FLOW = {
    "name": "anchored",
    "dag": {
        "nodes": [
            {"id": "a", "handler": "noop"},
            {"id": "b", "handler": "noop", "dependencies": ["a"]},
            {"id": "c", "handler": "noop", "dependencies": ["a"]},
        ]
    },
}


def orchestrion(
    *args: str, policy: Path | None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    full_env.pop("ORCHESTRION_GOVERNANCE_FILE", None)
    full_env.update({"COLUMNS": "250", **AUDIT_ENV, **(env or {})})
    if policy is not None:
        full_env["ORCHESTRION_GOVERNANCE_FILE"] = str(policy)
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, env=full_env)


def write_policy(path: Path, anchor: Path | None) -> Path:
    section = "" if anchor is None else f"  anchor:\n    file: {anchor}\n"
    path.write_text(f"version: 1\naudit:\n  enabled: true\n{section}")
    return path


@dataclass
class Template:
    """A SQLite database after two audited runs, its copy after the first, and the anchor."""

    root: Path

    @property
    def flow(self) -> Path:
        return self.root / "flow.json"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    root = tmp_path_factory.mktemp("anchored")
    t = Template(root)
    t.flow.write_text(json.dumps(FLOW))
    policy = write_policy(root / "policy.yaml", root / "anchor.jsonl")
    url = f"sqlite:///{root / 'trail.db'}"
    first = orchestrion("run", str(t.flow), "--db", url, "--quiet", policy=policy)
    assert first.returncode == 0, first.stderr
    shutil.copy(root / "trail.db", root / "after-first.db")
    second = orchestrion("run", str(t.flow), "--db", url, "--quiet", policy=policy)
    assert second.returncode == 0, second.stderr
    return t


@dataclass
class Case:
    """One test's copy of the template: the database, the anchor file, the policies."""

    root: Path
    flow: Path

    @property
    def db(self) -> Path:
        return self.root / "trail.db"

    @property
    def url(self) -> str:
        return f"sqlite:///{self.db}"

    @property
    def anchor(self) -> Path:
        return self.root / "anchor.jsonl"

    @property
    def policy(self) -> Path:
        return self.root / "anchored.yaml"

    @property
    def plain_policy(self) -> Path:
        return self.root / "plain.yaml"

    def sql(self, *statements: tuple[str, tuple[Any, ...]]) -> None:
        conn = sqlite3.connect(self.db)
        try:
            for statement, params in statements:
                conn.execute(statement, params)
            conn.commit()
        finally:
            conn.close()

    def records(self) -> list[tuple[int, str, str | None]]:
        """(seq, hash, execution id) of every record."""
        conn = sqlite3.connect(self.db)
        try:
            return list(conn.execute("SELECT seq, hash, execution_id FROM audit ORDER BY seq"))
        finally:
            conn.close()

    def rewind_to(self, seq: int) -> None:
        """Delete the records after ``seq`` and put back the head row as it was then (a copy
        kept from that time: made here with the key)."""
        (digest,) = [h for s, h, _ in self.records() if s == seq]
        head = AuditSigner(KEY, "k1").head(seq, digest)
        self.sql(
            ("DELETE FROM audit WHERE seq > ?", (seq,)),
            ("UPDATE audit_head SET seq = ?, hash = ?, mac = ?", (seq, digest, head.mac)),
        )

    def verify(self, *args: str, anchored: bool = True) -> subprocess.CompletedProcess[str]:
        policy = self.policy if anchored else self.plain_policy
        return orchestrion("audit", "verify", "--db", self.url, *args, policy=policy)


@pytest.fixture
def case(template: Template, tmp_path: Path) -> Iterator[Case]:
    for name in ("trail.db", "after-first.db", "anchor.jsonl"):
        shutil.copy(template.root / name, tmp_path / name)
    c = Case(tmp_path, template.flow)
    write_policy(c.policy, c.anchor)
    write_policy(c.plain_policy, None)
    yield c


def checkpoints(path: Path) -> list[Checkpoint]:
    return [Checkpoint.parse(line) for line in path.read_text().splitlines() if line]


def broken(result: subprocess.CompletedProcess[str], *texts: str) -> None:
    assert result.returncode == 1, result.stdout + result.stderr
    for text in texts:
        assert text in result.stderr, result.stderr


def test_every_run_anchors_its_trail_and_verify_reads_the_anchor(case: Case) -> None:
    records = case.records()
    anchored = checkpoints(case.anchor)
    first = sqlite3.connect(case.root / "after-first.db")
    (middle,) = first.execute("SELECT max(seq) FROM audit").fetchone()
    first.close()
    # Two runs, each anchoring the head at its start and at its end.
    assert [c.seq for c in anchored] == [0, middle, middle, records[-1][0]]
    assert anchored[-1].hash == records[-1][1]
    ok = case.verify()
    assert ok.returncode == 0, ok.stderr
    assert f"anchored: checkpoint of record {records[-1][0]} in {case.anchor}" in ok.stdout
    as_json = json.loads(case.verify("--json").stdout)
    assert as_json["ok"] is True and as_json["anchor"]["checkpoints"] == len(anchored)
    # --expect-head goes on working beside the anchor.
    head = f"{records[-1][0]}:{records[-1][1]}"
    assert case.verify("--expect-head", head).returncode == 0
    assert case.verify("--expect-head", f"{records[-1][0] + 5}:{'a' * 64}").returncode == 1


def test_deleting_every_record_is_a_break(case: Case) -> None:
    last = case.records()[-1][0]
    case.sql(("DELETE FROM audit", ()))
    broken(case.verify(), "broken at seq 1 (truncated)", f"checkpoint of record {last}")
    broken(case.verify(anchored=False), "broken at seq 1 (truncated)")


def test_deleting_the_trail_and_its_head_is_a_break(case: Case) -> None:
    last = case.records()[-1][0]
    case.sql(("DELETE FROM audit", ()), ("DELETE FROM audit_head", ()))
    result = case.verify()
    broken(
        result,
        "broken at seq 1 (truncated): the trail is empty but the journal holds",
        f"records 1..{last} were deleted",
    )
    # Without an anchor, the journal alone tells.
    broken(case.verify(anchored=False), "the trail is empty but the journal holds")
    body = json.loads(case.verify("--json").stdout)
    assert body["ok"] is False and body["records"] == 0
    assert {b["kind"] for b in body["breaks"]} == {"truncated"}


def test_deleting_the_newest_records_and_rewinding_the_head_is_a_break(case: Case) -> None:
    records = case.records()
    kept = records[-3][0]
    case.rewind_to(kept)
    broken(
        case.verify(),
        f"broken at seq {kept + 1} (missing)",
        f"also broken at seq {kept + 1} (truncated)",
        f"records {kept + 1}..{records[-1][0]} were deleted",
    )
    broken(case.verify(anchored=False), f"broken at seq {kept + 1} (missing)")


def test_deleting_whole_executions_from_the_end_is_seen_by_the_anchor(case: Case) -> None:
    records = case.records()
    last_execution = records[-1][2]
    kept = max(seq for seq, _, execution in records if execution != last_execution)
    case.rewind_to(kept)
    broken(case.verify(), f"broken at seq {kept + 1} (truncated)", "anchor holds a checkpoint")
    # The limit the anchor is there for: the database alone cannot tell this trail from one
    # that was off while the last execution ran.
    assert case.verify(anchored=False).returncode == 0


def test_restoring_an_older_copy_of_the_database_is_a_break(case: Case) -> None:
    newest = case.records()[-1][0]
    shutil.copy(case.root / "after-first.db", case.db)
    restored = case.records()[-1][0]
    broken(
        case.verify(),
        f"broken at seq {restored + 1} (truncated)",
        f"checkpoint of record {newest}",
        "older copy of the database restored",
    )
    assert case.verify(anchored=False).returncode == 0  # consistent in itself
    # Writing on over the restored copy forks the trail from the anchored one: the newest
    # checkpoint's seq now holds another record.
    run = orchestrion("run", str(case.flow), "--db", case.url, "--quiet", policy=case.policy)
    assert run.returncode == 0, run.stderr
    broken(case.verify(), f"broken at seq {newest} (forked)", "restored and written on")


def test_deleting_records_in_the_middle_is_a_break(case: Case) -> None:
    case.sql(("DELETE FROM audit WHERE seq IN (?, ?)", (5, 6)))
    broken(case.verify(), "broken at seq 5 (deleted)", "(missing)")


@pytest.mark.parametrize("how", ["forged", "edited", "garbage", "other_key"])
def test_a_tampered_anchor_file_is_a_break(case: Case, how: str) -> None:
    lines = case.anchor.read_text().splitlines()
    latest = json.loads(lines[-1])
    if how == "forged":  # a checkpoint of a shorter trail, made up without the key
        lines.append(json.dumps(latest | {"seq": 3, "records": 3, "hash": "0" * 64}))
    elif how == "edited":
        lines[-1] = json.dumps(latest | {"seq": latest["seq"] - 1})
    elif how == "garbage":
        lines.insert(1, "checkpoints end here")
    else:
        made = Checkpoint.sign(ChainHead(3, "0" * 64), 1.0, AuditSigner(b"x" * 32, "k1"))
        lines.append(made.line())
    case.anchor.write_text("\n".join(lines) + "\n")
    result = case.verify()
    broken(result, "audit trail broken (anchor)", str(case.anchor))
    body = json.loads(case.verify("--json").stdout)
    assert body["breaks"][0]["kind"] == "anchor"


def test_a_missing_anchor_file_is_a_break(case: Case) -> None:
    case.anchor.unlink()
    broken(case.verify(), "audit trail broken (anchor)", "is missing while the trail holds")


def test_a_copy_of_the_checkpoints_is_read_with_the_anchor_option(case: Case) -> None:
    """Lines collected from syslog (with their prefix) verify like the file."""
    copy = case.root / "from-syslog.log"
    copy.write_text(
        "".join(
            f"Dec  6 12:00:00 host orchestrion-audit[42]: {line}\n"
            for line in case.anchor.read_text().splitlines()
        )
    )
    case.anchor.unlink()
    assert case.verify("--anchor", str(copy), anchored=False).returncode == 0
    case.rewind_to(case.records()[-8][0])
    broken(case.verify("--anchor", str(copy), anchored=False), "(truncated)")
    export = case.root / "trail.jsonl"
    done = orchestrion("audit", "export", "--db", case.url, "-o", str(export), policy=None)
    assert done.returncode == 0, done.stderr
    offline = orchestrion(
        "audit", "verify", "--file", str(export), "--anchor", str(copy), policy=None
    )
    broken(offline, "(truncated)", "anchor holds a checkpoint")


def test_an_export_is_checked_against_the_configured_anchor(case: Case) -> None:
    export = case.root / "trail.jsonl"
    done = orchestrion("audit", "export", "--db", case.url, "-o", str(export), policy=None)
    assert done.returncode == 0, done.stderr
    lines = export.read_text().splitlines(keepends=True)
    whole = orchestrion("audit", "verify", "--file", str(export), policy=case.policy)
    assert whole.returncode == 0, whole.stderr
    assert f"in {case.anchor}" in whole.stdout
    export.write_text("".join(lines[:-3]))  # cut short: its own end looks like the trail's
    broken(
        orchestrion("audit", "verify", "--file", str(export), policy=case.policy),
        "(truncated)",
        "anchor holds a checkpoint",
    )
    plain = orchestrion("audit", "verify", "--file", str(export), policy=case.plain_policy)
    assert plain.returncode == 0, plain.stderr
    assert "no anchor checked" in plain.stdout
    # A line that gives a field twice is refused, not read as its last value.
    first = json.loads(lines[0])
    twice = lines[0].rstrip("\n")[:-1] + f', "actor": {json.dumps(first["actor"])}}}\n'
    export.write_text(twice + "".join(lines[1:]))
    refused = orchestrion("audit", "verify", "--file", str(export), policy=case.plain_policy)
    assert refused.returncode == 2 and "'actor' is given twice" in refused.stderr, refused.stderr


def test_a_process_that_cannot_write_its_anchor_refuses_to_start(case: Case) -> None:
    write_policy(case.policy, case.root / "no-such-dir" / "anchor.jsonl")
    run = orchestrion("run", str(case.flow), "--db", case.url, "--quiet", policy=case.policy)
    assert run.returncode == 2, run.stdout + run.stderr
    assert "cannot write the audit anchor file" in run.stderr


def test_a_purge_from_the_cli_is_anchored(case: Case) -> None:
    before = len(checkpoints(case.anchor))
    purged = orchestrion("purge", "--older-than", "0s", "--db", case.url, policy=case.policy)
    assert purged.returncode == 0, purged.stderr
    anchored = checkpoints(case.anchor)
    assert len(anchored) == before + 1 and anchored[-1].seq == case.records()[-1][0]
    assert case.verify().returncode == 0  # purged events: their records stay, no break
