"""Signed checkpoints of the audit trail: writing, reading back, and every way the file or
the trail can disagree with them."""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from orchestrion.errors import ConfigurationError
from orchestrion.governance.audit_chain import GENESIS, ChainHead
from orchestrion.governance.policy import AnchorPolicy, load_policy
from orchestrion.store.audit import AuditSigner, StoredHead
from orchestrion.store.audit_anchor import (
    AuditAnchor,
    Checkpoint,
    anchor_breaks,
    read_anchor,
    syslog_address,
)

KEY, OTHER = b"k" * 32, b"o" * 32
KEYS = {"k1": KEY}
SIGNER = AuditSigner(KEY, "k1")
H = {n: f"{n:064x}" for n in range(1, 20)}  # the stored trail's hashes by seq


def checkpoint(seq: int, at: float = 1_800_000_000.5, signer: AuditSigner = SIGNER) -> Checkpoint:
    return Checkpoint.sign(ChainHead(seq, H.get(seq, GENESIS)), at, signer)


def write(path: Path, *lines: str, newline: bool = True) -> Path:
    path.write_text("\n".join(lines) + ("\n" if newline else ""))
    return path


def test_a_checkpoint_round_trips_through_its_line_and_verifies() -> None:
    made = checkpoint(7)
    line = made.line()
    assert Checkpoint.parse(line) == made
    assert made.valid(KEYS) and not made.valid({"k1": OTHER}) and not made.valid({})
    # A syslog prefix is skipped: lines collected from syslog read the same.
    assert Checkpoint.parse(f"<85>orchestrion-audit[12]: {line}") == made
    assert json.loads(line)["records"] == 7


@pytest.mark.parametrize(
    ("field", "value"),
    [("seq", 8), ("hash", "f" * 64), ("records", 99), ("at", 1.0), ("key_id", "k2")],
)
def test_any_edited_field_breaks_the_signature(field: str, value: object) -> None:
    data = checkpoint(7).to_dict()
    data[field] = value
    edited = Checkpoint.parse(json.dumps(data))
    assert not edited.valid({"k1": KEY, "k2": KEY})


@pytest.mark.parametrize(
    "text",
    [
        "not json at all",
        "{broken",
        '{"type": "something.else", "seq": 1}',
        '{"type": "orchestrion.audit.checkpoint", "seq": "1", "hash": "x", "records": 1,'
        ' "at": 1, "key_id": "k1", "mac": "m"}',
        '{"type": "orchestrion.audit.checkpoint", "seq": -1, "hash": "x", "records": 1,'
        ' "at": 1, "key_id": "k1", "mac": "m"}',
        '{"type": "orchestrion.audit.checkpoint", "seq": true, "hash": "x", "records": 1,'
        ' "at": 1, "key_id": "k1", "mac": "m"}',
        '{"type": "orchestrion.audit.checkpoint", "seq": 1, "records": 1, "at": 1,'
        ' "key_id": "k1", "mac": "m"}',
    ],
)
def test_malformed_lines_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Checkpoint.parse(text)


def test_reading_the_file_keeps_valid_checkpoints_and_names_each_bad_line(tmp_path: Path) -> None:
    forged = checkpoint(9).to_dict() | {"mac": "0" * 64}
    edited = checkpoint(5).to_dict() | {"seq": 12}
    other_key = checkpoint(4, signer=AuditSigner(OTHER, "k9"))
    path = write(
        tmp_path / "anchor.jsonl",
        checkpoint(3).line(),
        "",
        json.dumps(forged),
        "garbage",
        json.dumps(edited),
        other_key.line(),
        checkpoint(6).line(),
    )
    reading = read_anchor(path, KEYS)
    assert reading.exists
    assert [c.seq for c in reading.checkpoints] == [3, 6]
    assert reading.latest is not None and reading.latest.seq == 6
    assert len(reading.problems) == 4
    assert "line 3: checkpoint of seq 9 does not match its signature" in reading.problems[0]
    assert "line 4: not a checkpoint" in reading.problems[1]
    assert "line 5: checkpoint of seq 12" in reading.problems[2]
    assert "line 6: checkpoint signed with an unknown key id 'k9'" in reading.problems[3]
    breaks = anchor_breaks(reading, H, 18)
    assert [b.kind for b in breaks] == ["anchor"] * 4


def test_a_last_line_still_being_written_is_left_for_later(tmp_path: Path) -> None:
    partial = checkpoint(8).line()[:40]
    path = write(tmp_path / "a", checkpoint(3).line(), partial, newline=False)
    reading = read_anchor(path, KEYS)
    assert [c.seq for c in reading.checkpoints] == [3] and not reading.problems


@pytest.mark.parametrize(
    ("seqs", "last", "hashes", "expected"),
    [
        ([0, 3, 6], 6, H, []),  # the trail holds every checkpoint
        ([3, 6], 9, H, []),  # and went on since
        ([3, 6], 4, H, [("truncated", 5)]),  # records 5..6 gone
        ([3, 6], 0, {}, [("truncated", 1)]),  # the whole trail gone
        ([3, 6], 6, H | {3: "e" * 64}, [("forked", 3)]),  # another trail from seq 3
        ([3, 8], 6, H | {3: "e" * 64}, [("truncated", 7), ("forked", 3)]),
    ],
)
def test_the_trail_must_hold_every_checkpoint(
    tmp_path: Path,
    seqs: list[int],
    last: int,
    hashes: dict[int, str],
    expected: list[tuple[str, int]],
) -> None:
    path = write(tmp_path / "a", *(checkpoint(s).line() for s in seqs))
    breaks = anchor_breaks(read_anchor(path, KEYS), hashes, last)
    assert [(b.kind, b.seq) for b in breaks] == expected
    for found in breaks:
        assert "older copy of the database" in found.message


def test_a_missing_file_is_a_break_once_the_trail_has_records(tmp_path: Path) -> None:
    reading = read_anchor(tmp_path / "absent.jsonl", KEYS)
    assert not reading.exists and reading.latest is None
    assert anchor_breaks(reading, {}, 0) == []  # nothing to anchor yet
    (found,) = anchor_breaks(reading, H, 4)
    assert found.kind == "anchor" and "absent.jsonl is missing" in found.message


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("/dev/log", (socket.AF_UNIX, "/dev/log")),
        ("127.0.0.1:514", (socket.AF_INET, ("127.0.0.1", 514))),
        ("[::1]:5514", (socket.AF_INET6, ("::1", 5514))),
        ("logs.internal:514", (socket.AF_INET, ("logs.internal", 514))),
    ],
)
def test_syslog_addresses(address: str, parsed: tuple[int, object]) -> None:
    assert syslog_address(address) == parsed


@pytest.mark.parametrize("address", ["dev/log", "host", "host:", ":514", "host:0", "h:70000"])
def test_bad_syslog_addresses_are_refused(address: str) -> None:
    with pytest.raises(ValueError, match="socket path"):
        syslog_address(address)


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("file: anchor.jsonl", "audit.anchor.file (line 4): Value error, must be an absolute"),
        ("syslog: nowhere", "audit.anchor.syslog (line 4)"),
        ("webhook: ftp://x", "audit.anchor.webhook (line 4)"),
        ("interval_seconds: 0", "audit.anchor.interval_seconds (line 4)"),
        ("files: /x", "audit.anchor.files (line 4)"),
    ],
)
def test_the_policy_section_is_validated(tmp_path: Path, section: str, message: str) -> None:
    policy = tmp_path / "governance.yaml"
    policy.write_text(f"version: 1\naudit:\n  anchor:\n    {section}\n")
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_policy(policy)


class Heads:
    """A head kept aside that the test moves."""

    def __init__(self) -> None:
        self.head: StoredHead | None = None

    def move(self, seq: int) -> None:
        self.head = SIGNER.head(seq, H[seq])

    async def __call__(self) -> StoredHead | None:
        return self.head


async def test_the_writer_anchors_at_start_when_moved_and_at_stop(tmp_path: Path) -> None:
    path = tmp_path / "anchor.jsonl"
    heads = Heads()
    policy = AnchorPolicy(file=str(path), interval_seconds=3600)
    anchor = AuditAnchor.for_policy(policy, SIGNER, KEYS, heads)
    assert anchor is not None
    await anchor.start()
    assert anchor.running and os.stat(path).st_mode & 0o777 == 0o600
    assert await anchor.checkpoint() is None  # nothing moved
    heads.move(4)
    assert (await anchor.checkpoint()) is not None
    heads.move(6)
    await anchor.stop()
    reading = read_anchor(path, KEYS)
    assert [(c.seq, c.hash) for c in reading.checkpoints] == [(0, GENESIS), (4, H[4]), (6, H[6])]
    assert not reading.problems


async def test_a_line_cut_by_a_crash_does_not_spoil_the_next(tmp_path: Path) -> None:
    path = write(tmp_path / "a", checkpoint(3).line(), checkpoint(5).line()[:30], newline=False)
    heads = Heads()
    heads.move(6)
    anchor = AuditAnchor(AnchorPolicy(file=str(path)), SIGNER, KEYS, heads)
    await anchor.checkpoint(force=True)
    reading = read_anchor(path, KEYS)
    assert [c.seq for c in reading.checkpoints] == [3, 6]
    assert len(reading.problems) == 1 and "line 2" in reading.problems[0]


async def test_a_head_that_does_not_verify_is_not_anchored(tmp_path: Path) -> None:
    path = tmp_path / "a"
    heads = Heads()
    heads.head = StoredHead(9, H[9], "k1", "0" * 64)
    anchor = AuditAnchor(AnchorPolicy(file=str(path)), SIGNER, KEYS, heads)
    assert await anchor.checkpoint(force=True) is None
    assert not path.exists()


async def test_a_file_that_cannot_be_written_refuses_the_start(tmp_path: Path) -> None:
    policy = AnchorPolicy(file=str(tmp_path / "no-such-dir" / "anchor.jsonl"))
    anchor = AuditAnchor(policy, SIGNER, KEYS, Heads())
    with pytest.raises(ConfigurationError, match="cannot write the audit anchor file"):
        await anchor.start()
    assert not anchor.running


def test_no_anchor_without_a_sink_or_without_the_trail() -> None:
    assert AuditAnchor.for_policy(AnchorPolicy(), SIGNER, KEYS, Heads()) is None
    assert AuditAnchor.for_policy(AnchorPolicy(file="/tmp/x"), None, {}, Heads()) is None


async def test_syslog_over_a_unix_socket_and_an_unreachable_webhook(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The file is written whatever happens to the copies; a webhook that does not answer is
    a warning, tried again at the next checkpoint."""
    folder = Path(tempfile.mkdtemp(dir="/tmp"))  # a Unix socket path must be short
    try:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind(str(folder / "log"))
        listener.settimeout(5)
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]  # nothing listens there once closed
        policy = AnchorPolicy(
            file=str(folder / "anchor.jsonl"),
            syslog=str(folder / "log"),
            webhook=f"http://127.0.0.1:{dead}/anchor",
        )
        heads = Heads()
        heads.move(5)
        anchor = AuditAnchor(policy, SIGNER, KEYS, heads)
        made = await anchor.checkpoint(force=True)
        assert made is not None
        message = listener.recv(65536).decode()
        listener.close()
        assert message.startswith("<85>orchestrion-audit[") and Checkpoint.parse(message) == made
        assert read_anchor(folder / "anchor.jsonl", KEYS).checkpoints == [made]
        assert "cannot POST the audit checkpoint to the webhook" in caplog.text
    finally:
        shutil.rmtree(folder)
