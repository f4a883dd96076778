"""Live progress of one execution in the terminal, fed by the engine's record listener.

On a terminal: a table of node states redrawn in place (counts by state for big workflows).
Elsewhere (pipes, CI logs): one line per node that finishes, fails, retries or waits.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group, RenderableType
from rich.table import Table
from rich.text import Text

from orchestrion.core.events import Record
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import NodeState

if TYPE_CHECKING:
    from rich.live import Live

__all__ = ["COMPENSATION_FAILED", "STATE_STYLE", "ProgressView", "node_mark"]

STATE_STYLE = {
    NodeState.PENDING: ("·", "dim"),
    NodeState.QUEUED: ("◌", "cyan"),
    NodeState.RUNNING: ("▶", "bold cyan"),
    NodeState.WAITING: ("⏸", "yellow"),
    NodeState.COMPLETED: ("✓", "green"),
    NodeState.FAILED: ("✗", "bold red"),
    NodeState.SKIPPED: ("↷", "dim"),
    NodeState.CANCELLED: ("⊘", "magenta"),
    NodeState.COMPENSATED: ("↺", "yellow"),
}

# A node whose compensation failed stays COMPLETED (its action was not undone), but is shown
# as failed: someone has to undo it by hand; never with the check mark of a completed node.
COMPENSATION_FAILED = "compensation_failed"
_COMPENSATION_FAILED_STYLE = ("✗", "bold red")


def node_mark(state: NodeState, compensation: str | None) -> tuple[str, str, str]:
    """The symbol, style and state word a node is shown with: its state's, or, when its
    compensation failed, a failure's (``compensation_failed``)."""
    if compensation == "failed":
        return (*_COMPENSATION_FAILED_STYLE, COMPENSATION_FAILED)
    symbol, style = STATE_STYLE[state]
    return symbol, style, state.value


# What the summary line counts, in this order: each state, then the failed compensations.
_SUMMARY_MARKS = [node_mark(state, None) for state in STATE_STYLE] + [
    (*_COMPENSATION_FAILED_STYLE, COMPENSATION_FAILED)
]
_DETAIL_LIMIT = 40
_WHILE_COMPENSATING = {
    RecordType.EXECUTION_CANCEL_REQUESTED: "cancel requested while compensating: the"
    " compensation runs to its end",
    RecordType.EXECUTION_PAUSE_REQUESTED: "pause requested while compensating: not paused,"
    " the compensation runs to its end",
}
_LINE_EVENTS = {
    RecordType.NODE_COMPLETED,
    RecordType.NODE_FAILED,
    RecordType.NODE_RETRY_SCHEDULED,
    RecordType.NODE_SKIPPED,
    RecordType.NODE_WAITING,
    RecordType.NODE_CANCELLED,
    RecordType.NODE_COMPENSATED,
    RecordType.NODE_COMPENSATION_FAILED,
}


# Records whose error is noted on their node's line: its failure, or its compensation's.
_ERROR_NOTED = frozenset({RecordType.NODE_FAILED, RecordType.NODE_COMPENSATION_FAILED})
# Records after which a node's failed compensation is no longer what it shows (a retry).
_COMPENSATION_CLEARED = frozenset(
    {
        RecordType.NODE_RESET,
        RecordType.NODE_COMPENSATION_RESET,
        RecordType.NODE_COMPENSATED,
        RecordType.NODE_COMPLETED,
    }
)


class ProgressView:
    """Shows the nodes of one execution as they move."""

    def __init__(self, console: Console, workflow: str, node_ids: tuple[str, ...]) -> None:
        self.console = console
        self.workflow = workflow
        self.node_ids = node_ids
        self.states: dict[str, NodeState] = dict.fromkeys(node_ids, NodeState.PENDING)
        self.attempts: dict[str, int] = dict.fromkeys(node_ids, 0)
        self.notes: dict[str, str] = {}
        self.compensations: dict[str, str] = {}  # node -> "failed" once its compensation failed
        self.execution_id: str | None = None
        self.started = time.monotonic()
        self._live: Live | None = None
        self._interactive = console.is_terminal

    def __enter__(self) -> ProgressView:
        if self._interactive:
            from rich.live import Live  # here: a run whose output is not a terminal draws none

            # get_renderable: each refresh draws anew, so the clock moves between events too.
            self._live = Live(
                console=self.console,
                refresh_per_second=12,
                transient=True,
                get_renderable=self._render,
            )
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
            self._live = None

    def on_records(self, execution_id: str, records: list[Record]) -> None:
        if self.execution_id is not None and execution_id != self.execution_id:
            return
        for record in records:
            said = _WHILE_COMPENSATING.get(record.type)
            if said is not None:
                self.console.print(Text(said, "yellow"), soft_wrap=True)
            if record.node is None or record.state is None:
                continue
            self.states[record.node] = record.state
            self.attempts[record.node] = record.attempt
            if record.type == RecordType.NODE_COMPENSATION_FAILED:
                self.compensations[record.node] = "failed"
            elif record.type in _COMPENSATION_CLEARED:
                self.compensations.pop(record.node, None)
            if record.type == RecordType.NODE_RETRY_SCHEDULED and record.data:
                error = record.data.get("error") or {}
                self.notes[record.node] = (
                    f"retry in {record.data.get('delay', 0):.2f}s: {error.get('message', '')}"
                )
            elif record.type in _ERROR_NOTED and record.error:
                self.notes[record.node] = str(record.error.get("message", ""))
            elif record.type == RecordType.NODE_SKIPPED and record.data:
                self.notes[record.node] = str(record.data.get("reason", ""))
            elif record.type == RecordType.NODE_COMPLETED:
                self.notes.pop(record.node, None)
            if not self._interactive and record.type in _LINE_EVENTS:
                self._print_line(record)
        if self._live is not None:
            self._live.refresh()

    def _print_line(self, record: Record) -> None:
        assert record.node is not None and record.state is not None
        symbol, style, _ = node_mark(record.state, self.compensations.get(record.node))
        label = record.type.removeprefix("node.")
        note = self.notes.get(record.node, "")
        elapsed = time.monotonic() - self.started
        line = Text(f"[{elapsed:7.2f}s] ")
        line.append(f"{symbol} {record.node}", style=style)
        line.append(f"  {label}")
        if record.attempt > 1:
            line.append(f" (attempt {record.attempt})")
        if note and label != "completed":
            line.append(f"  {note}", style="dim")
        self.console.print(line, highlight=False)

    def _render(self) -> RenderableType:
        marks = [node_mark(self.states[n], self.compensations.get(n)) for n in self.node_ids]
        counts = Counter(mark[2] for mark in marks)
        elapsed = time.monotonic() - self.started
        summary = Text(f"{self.workflow}  {elapsed:.1f}s  ")
        for symbol, style, word in _SUMMARY_MARKS:
            if counts.get(word):
                summary.append(f"{symbol} {word} {counts[word]}  ", style=style)
        if len(self.node_ids) > _DETAIL_LIMIT:
            return summary
        table = Table(box=None, show_header=False, padding=(0, 1))
        for node_id, (symbol, style, word) in zip(self.node_ids, marks, strict=True):
            attempt = self.attempts[node_id]
            table.add_row(
                Text(symbol, style=style),
                Text(node_id, style=style),
                Text(word, style=style),
                Text(f"#{attempt}" if attempt > 1 else ""),
                Text(self.notes.get(node_id, "")[:80], style="dim"),
            )
        return Group(summary, table)
