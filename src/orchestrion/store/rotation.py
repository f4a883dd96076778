"""Key rotation: re-encrypt every stored envelope with the primary key of the ring.

``rotate(url, ring)`` walks the four tables that hold sealed values (``executions``:
inputs, overrides, result, error; ``node_runs``: output, error; ``events``: data;
``node_logs``: message), in key order
and in batches of ``batch_size`` rows, each batch one transaction. A value already on the
primary key is left as it is, so a second run writes nothing (idempotent) and a run that was
interrupted simply goes on where the first one stopped (resumable). Each rewrite is a
compare-and-swap on the old text: a row the engine changed meanwhile is counted as ``changed``
and left for the next run, never overwritten with a stale value. Once a run reports no value
left on other keys, those keys can be removed from ``ORCHESTRION_ENCRYPTION_KEYS``.

A value whose key id is not in the ring (or that does not decrypt) is counted under
``unreadable`` with its key id, and the run carries on with the others.

Works on the SQL stores (SQLite and PostgreSQL), through the store layer itself: the same
URLs, drivers and locks as the engine (``SQLStore.read_rows`` and ``write_each``).
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from orchestrion.errors import ConfigurationError, StoreError
from orchestrion.governance.encryption import (
    DecryptionError,
    KeyRing,
    decrypt_value,
    encrypt_value,
    is_encrypted,
)
from orchestrion.store.encrypted import SEALED_LOG, context
from orchestrion.store.factory import open_store
from orchestrion.store.sql.core import SQLStore
from orchestrion.store.sql.sqlite import SQLiteSynchronous
from orchestrion.store.url_display import redacted_url

__all__ = ["RotationReport", "rotate"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_SEALED = '%"$enc"%'
_SEALED_LOG = SEALED_LOG + "%"


@dataclass
class RotationReport:
    """What a rotation did, per table and in total."""

    primary: str
    rows: Counter[str] = field(default_factory=Counter)  # rows holding envelopes, by table
    rewritten: Counter[str] = field(default_factory=Counter)  # envelopes moved to the primary
    current: int = 0  # envelopes already on the primary key
    changed: int = 0  # rows changed by the engine during the run: run again for them
    unreadable: Counter[str] = field(default_factory=Counter)  # by key id

    @property
    def done(self) -> bool:
        """True when every stored envelope is on the primary key."""
        return not self.changed and not self.unreadable


def _connect(url: str, sqlite_synchronous: SQLiteSynchronous) -> SQLStore[Any]:
    """The SQL store at ``url``, through the store factory (the URLs every command takes)."""
    store = open_store(url, sqlite_synchronous=sqlite_synchronous)
    if not isinstance(store, SQLStore):
        scheme = url.partition("://")[0].lower()
        raise ConfigurationError(
            f"keys rotate works on SQLite and PostgreSQL stores, not '{scheme}://'"
        )
    return store


class _Rewrap:
    """Re-encrypts the envelopes of one row's values, counting what it saw."""

    def __init__(self, ring: KeyRing, report: RotationReport, table: str) -> None:
        self.ring = ring
        self.report = report
        self.table = table

    def top(self, value: Any, ctx: str) -> Any:
        if not is_encrypted(value):
            return value
        if value.get("kid") == self.ring.primary:
            self.report.current += 1
            return value
        try:
            plain = decrypt_value(self.ring, value, ctx)
        except DecryptionError:
            self.report.unreadable[str(value.get("kid"))] += 1
            return value
        self.report.rewritten[self.table] += 1
        return encrypt_value(self.ring, plain, ctx)

    def error(self, value: Any, ctx: str) -> Any:
        if not isinstance(value, dict) or not is_encrypted(value.get("message")):
            return value
        message = self.top(value["message"], ctx)
        return value if message is value["message"] else {**value, "message": message}

    def data(self, value: Any, execution_id: str, node_id: str | None) -> Any:
        if not isinstance(value, dict):
            return value
        out = value
        if "error" in value:
            err = self.error(value["error"], context(execution_id, node_id, "error"))
            if err is not value["error"]:
                out = {**out, "error": err}
        if "sealed" in value:
            sealed = self.top(value["sealed"], context(execution_id, node_id, "data"))
            if sealed is not value["sealed"]:
                out = {**out, "sealed": sealed}
        return out


def _json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


async def rotate(
    url: str,
    ring: KeyRing,
    *,
    batch_size: int = 500,
    dry_run: bool = False,
    progress: Callable[[str, int], None] | None = None,
    sqlite_synchronous: SQLiteSynchronous = "normal",
) -> RotationReport:
    """Re-encrypt what the store at ``url`` holds with ``ring.primary``; see the module."""
    if batch_size < 1:
        raise ConfigurationError("batch size must be at least 1")
    db = _connect(url, sqlite_synchronous)
    report = RotationReport(ring.primary)
    try:
        await db.open_existing()
        await _executions(db, ring, report, batch_size, dry_run, progress)
        await _node_runs(db, ring, report, batch_size, dry_run, progress)
        await _events(db, ring, report, batch_size, dry_run, progress)
        await _node_logs(db, ring, report, batch_size, dry_run, progress)
    except (StoreError, OSError) as exc:
        raise StoreError(f"key rotation on {redacted_url(url)}: {exc}") from exc
    finally:
        await db.close()
    return report


async def _apply(
    db: SQLStore[Any],
    report: RotationReport,
    table: str,
    updates: list[tuple[str, Mapping[str, Any]]],
    dry_run: bool,
    progress: Callable[[str, int], None] | None,
    scanned: int,
) -> None:
    report.rows[table] += scanned
    if updates and not dry_run:
        took = await db.write_each(updates)
        report.changed += len(updates) - took
    if progress is not None:
        progress(table, report.rows[table])
    await asyncio.sleep(0)  # a rotation inside a running engine's process lets it breathe


async def _executions(
    db: SQLStore[Any],
    ring: KeyRing,
    report: RotationReport,
    size: int,
    dry_run: bool,
    progress: Callable[[str, int], None] | None,
) -> None:
    after = ""
    rewrap = _Rewrap(ring, report, "executions")
    columns = ("inputs", "overrides", "result", "error")
    where = " OR ".join(f"{c} LIKE :pat" for c in columns)
    sql = (
        f"SELECT id, {', '.join(columns)} FROM executions WHERE id > :after AND ({where})"
        " ORDER BY id LIMIT :limit"
    )
    while True:
        rows = await db.read_rows(sql, {"after": after, "pat": _SEALED, "limit": size})
        if not rows:
            return
        updates = [
            update
            for eid, *values in rows
            for update in _cell_updates(
                rewrap, "id = :id", {"id": eid}, eid, None, zip(columns, values, strict=True)
            )
        ]
        after = rows[-1][0]
        await _apply(db, report, "executions", updates, dry_run, progress, len(rows))


def _cell_updates(
    rewrap: _Rewrap,
    where: str,
    key: Mapping[str, Any],
    execution_id: str,
    node_id: str | None,
    cells: Iterable[tuple[str, str | None]],
) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The compare-and-swap updates of one row (found by ``where`` with ``key``) for those of
    its ``cells`` (column, stored text) holding envelopes not on the primary key."""
    for column, old in cells:
        if old is None:
            continue
        value = _json(old)
        ctx = context(execution_id, node_id, column)
        new = rewrap.error(value, ctx) if column == "error" else rewrap.top(value, ctx)
        if new is not value:
            yield (
                f"UPDATE {rewrap.table} SET {column} = :new WHERE {where} AND {column} = :old",
                {"new": _dumps(new), **key, "old": old},
            )


async def _node_runs(
    db: SQLStore[Any],
    ring: KeyRing,
    report: RotationReport,
    size: int,
    dry_run: bool,
    progress: Callable[[str, int], None] | None,
) -> None:
    after: tuple[str, str] = ("", "")
    rewrap = _Rewrap(ring, report, "node_runs")
    sql = (
        "SELECT execution_id, node_id, output, error FROM node_runs"
        " WHERE (execution_id > :e OR (execution_id = :e AND node_id > :n))"
        " AND (output LIKE :pat OR error LIKE :pat)"
        " ORDER BY execution_id, node_id LIMIT :limit"
    )
    while True:
        params = {"e": after[0], "n": after[1], "pat": _SEALED, "limit": size}
        rows = await db.read_rows(sql, params)
        if not rows:
            return
        where = "execution_id = :e AND node_id = :n"
        updates = [
            update
            for eid, node, output, error in rows
            for update in _cell_updates(
                rewrap,
                where,
                {"e": eid, "n": node},
                eid,
                node,
                (("output", output), ("error", error)),
            )
        ]
        after = (rows[-1][0], rows[-1][1])
        await _apply(db, report, "node_runs", updates, dry_run, progress, len(rows))


async def _events(
    db: SQLStore[Any],
    ring: KeyRing,
    report: RotationReport,
    size: int,
    dry_run: bool,
    progress: Callable[[str, int], None] | None,
) -> None:
    def rewrite(rewrap: _Rewrap, eid: str, node: str | None, old: str) -> str | None:
        value = _json(old)
        new = rewrap.data(value, eid, node)
        return None if new is value else _dumps(new)

    rewrap = _Rewrap(ring, report, "events")
    await _by_seq(db, rewrap, "data", _SEALED, rewrite, size, dry_run, progress)


async def _node_logs(
    db: SQLStore[Any],
    ring: KeyRing,
    report: RotationReport,
    size: int,
    dry_run: bool,
    progress: Callable[[str, int], None] | None,
) -> None:
    def rewrite(rewrap: _Rewrap, eid: str, node: str | None, old: str) -> str | None:
        envelope = _json(old[len(SEALED_LOG) :])
        new = rewrap.top(envelope, context(eid, node, "log"))
        return None if new is envelope else SEALED_LOG + _dumps(new)

    rewrap = _Rewrap(ring, report, "node_logs")
    await _by_seq(db, rewrap, "message", _SEALED_LOG, rewrite, size, dry_run, progress)


async def _by_seq(
    db: SQLStore[Any],
    rewrap: _Rewrap,
    column: str,
    pattern: str,
    rewrite: Callable[[_Rewrap, str, str | None, str], str | None],
    size: int,
    dry_run: bool,
    progress: Callable[[str, int], None] | None,
) -> None:
    """Walk ``rewrap.table``, keyed by ``seq``, through the rows whose ``column`` is like
    ``pattern``; ``rewrite(rewrap, execution_id, node_id, old)`` gives the column's new text,
    or None to leave it."""
    table, after = rewrap.table, 0
    sql = (
        f"SELECT seq, execution_id, node_id, {column} FROM {table}"
        f" WHERE seq > :after AND {column} LIKE :pat ORDER BY seq LIMIT :limit"
    )
    update = f"UPDATE {table} SET {column} = :new WHERE seq = :seq AND {column} = :old"
    while True:
        rows = await db.read_rows(sql, {"after": after, "pat": pattern, "limit": size})
        if not rows:
            return
        updates: list[tuple[str, Mapping[str, Any]]] = []
        for seq, eid, node, old in rows:
            new = rewrite(rewrap, eid, node, old)
            if new is not None:
                updates.append((update, {"new": new, "seq": seq, "old": old}))
        after = rows[-1][0]
        await _apply(db, rewrap.report, table, updates, dry_run, progress, len(rows))
