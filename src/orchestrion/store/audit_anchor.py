"""The audit trail anchored outside the database: signed checkpoints of its head.

Whoever can write the database can delete the newest records and put back a head row they
copied earlier, or restore an older copy of the whole database: the database then holds a
consistent, shorter trail. A checkpoint is the head at one moment (``seq``, ``hash``, the
number of ``records`` up to it, the time ``at``), signed with the audit key (``key_id``,
``mac``: HMAC-SHA256 over a text distinct from records and head rows). Every process that
writes the trail appends one to the policy's ``audit.anchor.file`` (opened append-only, one
JSON object a line, fsynced), sends it to ``audit.anchor.syslog`` and POSTs it to
``audit.anchor.webhook``: at start, every ``interval_seconds`` when the head moved, and at
shutdown.

Verifying reads the file (``read_anchor``) and checks every checkpoint against the stored
trail (``anchor_breaks``): a trail shorter than a checkpoint is ``truncated``, another hash at
a checkpoint's seq is ``forked`` (rewritten, or an older copy restored and written on), and a
line that is not a checkpoint signed by an audit key, or a missing file while the trail has
records, is an ``anchor`` break. Records written after the newest checkpoint are not covered:
the interval bounds that window.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrion.errors import ConfigurationError
from orchestrion.governance.audit_chain import GENESIS, AuditBreak, ChainHead
from orchestrion.governance.syslog_target import syslog_address

if TYPE_CHECKING:
    from orchestrion.governance.policy import AnchorPolicy
    from orchestrion.store.audit import AuditSigner, StoredHead

__all__ = [
    "CHECKPOINT_TYPE",
    "AnchorReading",
    "AuditAnchor",
    "Checkpoint",
    "anchor_breaks",
    "read_anchor",
    "syslog_address",
]

logger = logging.getLogger(__name__)

CHECKPOINT_TYPE = "orchestrion.audit.checkpoint"
_SYSLOG_PRI = 10 * 8 + 5  # facility authpriv, severity notice
_SEND_TIMEOUT = 5.0  # syslog and webhook


def checkpoint_text(seq: int, digest: str, records: int, at: float, key_id: str) -> str:
    """What a checkpoint's ``mac`` signs (distinct from records and the head row)."""
    return f"audit_checkpoint:{seq}:{digest}:{records}:{float(at)!r}:{key_id}"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The trail's head at one moment, signed; see the module docstring."""

    seq: int
    hash: str
    records: int
    at: float
    key_id: str
    mac: str

    @classmethod
    def sign(cls, head: ChainHead, at: float, signer: AuditSigner) -> Checkpoint:
        text = checkpoint_text(head.seq, head.hash, head.seq, at, signer.key_id)
        return cls(head.seq, head.hash, head.seq, at, signer.key_id, signer.sign(text))

    def valid(self, keys: Mapping[str, bytes]) -> bool:
        key = keys.get(self.key_id)
        if key is None:
            return False
        text = checkpoint_text(self.seq, self.hash, self.records, self.at, self.key_id)
        expected = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.mac)

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": CHECKPOINT_TYPE,
            "seq": self.seq,
            "hash": self.hash,
            "records": self.records,
            "at": self.at,
            "key_id": self.key_id,
            "mac": self.mac,
        }

    def line(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """A checkpoint from its line (a syslog prefix before the JSON is skipped); raises
        ``ValueError`` naming what is wrong."""
        start = text.find("{")
        if start < 0:
            raise ValueError("no JSON object")
        data = json.loads(text[start:])
        if not isinstance(data, dict) or data.get("type") != CHECKPOINT_TYPE:
            raise ValueError(f"not an {CHECKPOINT_TYPE} object")
        seq, records, at = data.get("seq"), data.get("records"), data.get("at")
        strings = [data.get(name) for name in ("hash", "key_id", "mac")]
        if (
            not isinstance(seq, int)
            or isinstance(seq, bool)
            or seq < 0
            or not isinstance(records, int)
            or isinstance(records, bool)
            or not isinstance(at, int | float)
            or isinstance(at, bool)
            or not all(isinstance(value, str) for value in strings)
        ):
            raise ValueError("seq, hash, records, at, key_id or mac missing or of the wrong type")
        return cls(seq, str(strings[0]), records, float(at), str(strings[1]), str(strings[2]))


@dataclass(slots=True)
class AnchorReading:
    """What the anchor file holds: its valid checkpoints and what is wrong with the rest."""

    path: str
    exists: bool
    checkpoints: list[Checkpoint] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def latest(self) -> Checkpoint | None:
        return max(self.checkpoints, key=lambda c: (c.seq, c.at), default=None)

    def to_dict(self) -> dict[str, Any]:
        latest = self.latest
        return {
            "file": self.path,
            "exists": self.exists,
            "checkpoints": len(self.checkpoints),
            "latest": None if latest is None else latest.to_dict(),
            "problems": list(self.problems),
        }


def read_anchor(path: str | Path, keys: Mapping[str, bytes]) -> AnchorReading:
    """Every line of the anchor file, checked against ``keys``. A last line without its
    newline is a checkpoint still being written and is left for the next reading."""
    file = Path(path)
    reading = AnchorReading(str(file), exists=file.exists())
    if not reading.exists:
        return reading
    try:
        text = file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        reading.problems.append(f"cannot read the anchor file {file}: {exc.strerror}")
        return reading
    lines = text.split("\n")
    for number, line in enumerate(lines[:-1], start=1):  # the last piece has no newline
        if not line.strip():
            continue
        try:
            checkpoint = Checkpoint.parse(line)
        except ValueError as exc:
            reading.problems.append(f"{file}, line {number}: not a checkpoint ({exc})")
            continue
        if checkpoint.key_id not in keys:
            reading.problems.append(
                f"{file}, line {number}: checkpoint signed with an unknown key id "
                f"{checkpoint.key_id!r}"
            )
        elif not checkpoint.valid(keys):
            reading.problems.append(
                f"{file}, line {number}: checkpoint of seq {checkpoint.seq} does not match "
                "its signature (forged or edited)"
            )
        else:
            reading.checkpoints.append(checkpoint)
    return reading


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at))


def anchor_breaks(
    reading: AnchorReading, hashes: Mapping[int, str], last_seq: int
) -> list[AuditBreak]:
    """Where the stored trail (``hashes`` by seq, ending at ``last_seq``) disagrees with the
    anchor: the file's own problems, a missing file while the trail has records, the trail
    shorter than the newest checkpoint, another hash at a checkpoint's seq."""
    breaks = [AuditBreak(0, "anchor", problem) for problem in reading.problems]
    if not reading.exists and last_seq > 0:
        breaks.append(
            AuditBreak(
                0,
                "anchor",
                f"the anchor file {reading.path} is missing while the trail holds {last_seq} "
                "record(s): it was removed, or no process writing this trail has the anchor "
                "configured",
            )
        )
    latest = reading.latest
    if latest is not None and latest.seq > last_seq:
        breaks.append(
            AuditBreak(
                last_seq + 1,
                "truncated",
                f"the trail ends at record {last_seq} but the anchor holds a checkpoint of "
                f"record {latest.seq} written at {_when(latest.at)}: records "
                f"{last_seq + 1}..{latest.seq} were deleted, or an older copy of the database "
                "restored",
            )
        )
    forked = [
        c for c in reading.checkpoints if 0 < c.seq <= last_seq and hashes.get(c.seq) != c.hash
    ]
    if forked:
        first = min(forked, key=lambda c: c.seq)
        breaks.append(
            AuditBreak(
                first.seq,
                "forked",
                f"record {first.seq} is not the one anchored at {_when(first.at)}: the trail "
                "from there was rewritten, or an older copy of the database restored and "
                "written on",
            )
        )
    return breaks


def _append(path: Path, line: str) -> None:
    """Append one line, created 0600 if absent, and fsync. A previous writer that died mid-line
    left no newline: start on a fresh line so this one stays whole."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        prefix = ""
        size = os.fstat(fd).st_size
        if size:
            with open(path, "rb") as existing:
                existing.seek(size - 1)
                if existing.read(1) != b"\n":
                    prefix = "\n"
        os.write(fd, (prefix + line + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _send_syslog(address: str, line: str) -> None:
    family, target = syslog_address(address)
    message = f"<{_SYSLOG_PRI}>orchestrion-audit[{os.getpid()}]: {line}".encode()
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(_SEND_TIMEOUT)
        sock.sendto(message, target)


class AuditAnchor:
    """The checkpoints one process writes; see the module docstring.

    ``start`` writes the first checkpoint and refuses (``ConfigurationError``) when the file
    cannot be written, so a process never runs silently unanchored; later failures, and any
    syslog or webhook failure, are logged and tried again at the next checkpoint.
    """

    def __init__(
        self,
        policy: AnchorPolicy,
        signer: AuditSigner,
        keys: Mapping[str, bytes],
        head: Callable[[], Awaitable[StoredHead | None]],
    ) -> None:
        self._policy = policy
        self._signer = signer
        self._keys = dict(keys)
        self._head = head
        self._last: ChainHead | None = None
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def for_policy(
        cls,
        policy: AnchorPolicy,
        signer: AuditSigner | None,
        keys: Mapping[str, bytes],
        head: Callable[[], Awaitable[StoredHead | None]],
    ) -> AuditAnchor | None:
        """An anchor when the trail is on and the policy names somewhere to write."""
        if signer is None or not (policy.file or policy.syslog or policy.webhook):
            return None
        return cls(policy, signer, keys, head)

    @property
    def running(self) -> bool:
        return self._task is not None

    async def start(self) -> None:
        try:
            await self.checkpoint(force=True, strict=True)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot write the audit anchor file {self._policy.file}: {exc.strerror}"
            ) from exc
        self._task = asyncio.create_task(self._every_interval(), name="orchestrion-audit-anchor")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        try:
            await self.checkpoint(force=True)
        except Exception:  # shutting down: the reason is in the log
            logger.exception("cannot write the audit checkpoint at shutdown")

    async def _every_interval(self) -> None:
        while True:
            await asyncio.sleep(self._policy.interval_seconds)
            try:
                await self.checkpoint()
            except Exception:  # the store away for a moment: the next turn tries again
                logger.exception("cannot write the audit checkpoint")

    async def checkpoint(self, *, force: bool = False, strict: bool = False) -> Checkpoint | None:
        """Anchor the head now (unless it has not moved since the last one and not ``force``).
        With ``strict``, a file that cannot be written raises ``OSError``."""
        stored = await self._head()
        if stored is None:
            head = ChainHead(0, GENESIS)
        elif not stored.valid(self._keys):
            logger.error(
                "audit head (seq %d) does not match its signature: not anchored; run "
                "`orchestrion audit verify`",
                stored.seq,
            )
            return None
        else:
            head = stored.chain
        if not force and head == self._last:
            return None
        if self._last is not None and head.seq < self._last.seq:
            logger.error(
                "audit head went back from record %d to %d: records were deleted",
                self._last.seq,
                head.seq,
            )
        checkpoint = Checkpoint.sign(head, time.time(), self._signer)
        await self._write(checkpoint, strict)
        self._last = head
        return checkpoint

    async def _write(self, checkpoint: Checkpoint, strict: bool) -> None:
        line = checkpoint.line()
        if self._policy.file:
            try:
                await asyncio.to_thread(_append, Path(self._policy.file), line)
            except OSError:
                if strict:
                    raise
                logger.exception("cannot append the audit checkpoint to %s", self._policy.file)
        if self._policy.syslog:
            try:
                await asyncio.to_thread(_send_syslog, self._policy.syslog, line)
            except (OSError, ValueError) as exc:
                logger.warning("cannot send the audit checkpoint to syslog: %s", exc)
        if self._policy.webhook:
            await self._post(checkpoint)

    async def _post(self, checkpoint: Checkpoint) -> None:
        import httpx

        url = str(self._policy.webhook)
        try:
            async with httpx.AsyncClient(timeout=_SEND_TIMEOUT, trust_env=False) as client:
                response = await client.post(url, json=checkpoint.to_dict())
            response.raise_for_status()
        except httpx.HTTPError as exc:
            logger.warning("cannot POST the audit checkpoint to the webhook: %s", exc)
