"""``orchestrion events``: an execution's journal as people read it, and per-node totals.

Every attempt of every node is in the journal with its error, so what a retry hid (the
errors of earlier attempts) and how long a node took in all (first start to its end,
backoff included) can be seen from the command line, locally or with ``--server``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rich.text import Text

from orchestrion.core.record_types import RecordType

if TYPE_CHECKING:
    from rich.console import Console

    from orchestrion.engine.facade import Engine

__all__ = ["NodeTotal", "local_events", "node_totals", "remote_events", "render_events"]

_PAGE = 1000
# A node's compensation is not its time: its ``node.compensated`` ends nothing here.
_FINAL_NODE_EVENTS = frozenset(
    {
        RecordType.NODE_COMPLETED,
        RecordType.NODE_FAILED,
        RecordType.NODE_SKIPPED,
        RecordType.NODE_CANCELLED,
    }
)

# Events shown in red: a failure, a failed attempt, a compensation that failed.
_FAILURES = frozenset(
    {
        RecordType.NODE_FAILED,
        RecordType.NODE_RETRY_SCHEDULED,
        RecordType.NODE_COMPENSATION_FAILED,
        RecordType.EXECUTION_FAILED,
    }
)


@dataclass
class NodeTotal:
    """One node over all its attempts."""

    attempts: int = 0
    first_start: float | None = None
    end: float | None = None
    errors: list[tuple[int, str]] = field(default_factory=list)  # (attempt, message)

    @property
    def total(self) -> float | None:
        if self.first_start is None or self.end is None:
            return None
        return self.end - self.first_start


def _row(
    seq: int, kind: str, node: str | None, attempt: int, at: float | None, data: Any
) -> dict[str, Any]:
    return {
        "seq": seq,
        "type": kind,
        "node_id": node,
        "attempt": attempt,
        "at": at,
        "data": data or {},
    }


async def local_events(engine: Engine, execution_id: str) -> list[dict[str, Any]]:
    """Every journal event of the execution, oldest first (sealed values opened)."""
    await engine.store.get_execution(execution_id)  # ExecutionNotFound when there is none
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await engine.store.list_events(execution_id, after_seq=after, limit=_PAGE)
        rows += [_row(e.seq, e.type, e.node_id, e.attempt, e.at, e.data) for e in page]
        if len(page) < _PAGE:
            return rows
        after = page[-1].seq


def remote_events(server: str, api_key: str | None, execution_id: str) -> list[dict[str, Any]]:
    """The same through the service's journal endpoint."""
    from orchestrion.cli.remote import connected

    rows: list[dict[str, Any]] = []
    with connected(server, api_key) as client:
        client.status(execution_id, include_outputs=False)  # NotFound when there is none
        after = 0
        while True:
            page = client.events(execution_id, after, _PAGE)
            rows += [_row(e.seq, e.type, e.node_id, e.attempt, e.at, e.data) for e in page.items]
            if not page.items or page.next_after <= after:
                return rows
            after = page.next_after


def _error_message(row: dict[str, Any]) -> str | None:
    error = row["data"].get("error")
    if not isinstance(error, dict):
        return None if error is None else str(error)
    return str(error.get("message", error))


def node_totals(rows: list[dict[str, Any]]) -> dict[str, NodeTotal]:
    """Per node: attempts made, first start to end, and the error of each failed attempt."""
    totals: dict[str, NodeTotal] = {}
    for row in rows:
        node = row["node_id"]
        if node is None:
            continue
        total = totals.setdefault(node, NodeTotal())
        kind = row["type"]
        if kind == RecordType.NODE_STARTED:
            total.attempts = max(total.attempts, row["attempt"])
            if total.first_start is None:
                total.first_start = row["at"]
        if kind in (RecordType.NODE_RETRY_SCHEDULED, RecordType.NODE_FAILED):
            message = _error_message(row)
            if message is not None:
                total.errors.append((row["attempt"], message))
        if kind in _FINAL_NODE_EVENTS:
            total.end = row["at"]
    return totals


def _detail(row: dict[str, Any]) -> str:
    data = row["data"]
    kind = row["type"]
    if kind == RecordType.NODE_RETRY_SCHEDULED:
        return f"retry in {float(data.get('delay', 0)):.2f}s: {_error_message(row) or ''}"
    if kind in (RecordType.NODE_FAILED, RecordType.EXECUTION_FAILED):
        return _error_message(row) or ""
    if kind == RecordType.EXECUTION_CANCEL_REQUESTED:
        return f"{data.get('reason', 'cancel')}: the compensation runs to its end"
    if kind == RecordType.EXECUTION_PAUSE_REQUESTED:
        return "not paused: the compensation runs to its end"
    if kind == RecordType.NODE_COMPENSATION_FAILED:
        return f"compensation failed: {_error_message(row) or ''}"
    if kind == RecordType.NODE_SKIPPED:
        return str(data.get("reason", ""))
    if kind == RecordType.NODE_WAITING and data.get("wait_reason"):
        return f"waiting: {data['wait_reason']}"
    return ""


def render_events(console: Console, rows: list[dict[str, Any]]) -> None:
    """The journal, one line per event, then each node's attempts, total time and errors."""
    from orchestrion.cli.tables import Column, aside, piped, print_table
    from orchestrion.cli.terminal import err

    if not rows:
        aside(console, "no events")
        return
    start = rows[0]["at"] or 0.0
    columns = [
        Column("seq", right=True),
        Column("time", right=True),
        Column("node"),
        Column("attempt", right=True),
        Column("event"),
        Column("detail", cut=True),
    ]
    table: list[list[str | Text]] = []
    for row in rows:
        at = row["at"]
        failed = row["type"] in _FAILURES
        table.append(
            [
                str(row["seq"]),
                "-" if at is None else f"+{at - start:.3f}s",
                Text(row["node_id"] or ""),
                str(row["attempt"]) if row["node_id"] else "",
                Text(row["type"], style="red" if failed else ""),
                Text(_detail(row), style="red" if failed else "dim"),
            ]
        )
    title = None
    if start:
        when = datetime.fromtimestamp(start, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        title = Text(f"journal from {when}")
    print_table(console, columns, table, empty="no events", title=title, err=err)
    totals = node_totals(rows)
    if not totals:
        return
    console.print()
    summary = [
        Column("node"),
        Column("attempts", right=True),
        Column("total time", right=True),
        Column("errors of failed attempts", cut=True),
    ]
    lines: list[list[str | Text]] = []
    for node, total in totals.items():
        seconds = total.total
        lines.append(
            [
                Text(node),
                str(total.attempts),
                "-" if seconds is None else f"{seconds:.3f}s",
                Text("; ".join(f"#{n}: {m}" for n, m in total.errors), style="red"),
            ]
        )
    heading = None if piped(console) else "nodes"
    print_table(console, summary, lines, empty="no node attempts", title=heading, err=err)
