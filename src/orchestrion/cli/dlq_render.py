"""What ``orchestrion dlq`` prints: a table of dead letters, one letter's fields, or JSON.

Letters come as the client's models (``orchestrion.client.DeadLetter``...), whether they were
read here or through a server, so both ways print the same.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from rich.table import Table
from rich.text import Text

from orchestrion.cli.tables import Column, aside, piped, print_table, when
from orchestrion.cli.terminal import console, err

if TYPE_CHECKING:
    from orchestrion.client import DeadLetter, DeadLetterPage

__all__ = ["print_json", "render_letter", "render_page"]

_MESSAGE_PREVIEW = 80


def _when(ts: float | None) -> str:
    from datetime import UTC, datetime

    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _preview(text: str, whole: bool = False) -> str:
    """The message on one line: cut on a terminal; ``whole`` (piped), nothing cut."""
    line = " ".join(text.split())
    if whole:
        return line
    return line if len(line) <= _MESSAGE_PREVIEW else line[: _MESSAGE_PREVIEW - 1] + "…"


def print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def render_page(page: DeadLetterPage) -> None:
    plain = piped(console)
    # Ids are never cut (they are what the other commands take): a node's entry id holds its
    # execution and node, so those columns are shown only for parked tasks, which need them.
    tasks = any(letter.kind != "node" for letter in page.items)
    # On a narrow terminal the kind, attempt and deliveries make room for the message.
    columns = [Column("id"), Column("kind", optional=True), Column("category")]
    if tasks:
        columns += [Column("execution"), Column("node")]
    columns.append(Column("attempt", right=True, optional=True))
    if tasks:
        columns += [Column("handler", cut=True), Column("deliveries", right=True, optional=True)]
    columns += [Column("parked at"), Column("message", cut=True)]
    rows: list[list[str | Text]] = []
    for letter in page.items:
        cells: list[Any] = [
            Text(letter.id),
            Text(letter.kind),
            Text(letter.category, style="yellow" if letter.category == "delivery" else "red"),
        ]
        if tasks:
            cells += [Text(letter.execution_id or "-"), Text(letter.node_id or "-")]
        cells.append("-" if letter.attempt is None else str(letter.attempt))
        if tasks:
            cells += [Text(letter.handler or "-"), str(letter.deliveries)]
        cells += [when(letter.parked_at, plain), Text(_preview(letter.message, plain))]
        rows.append(cells)
    title = f"dead letters: {len(page.items)} of {page.total}"
    print_table(
        console, columns, rows, empty="the dead letter queue is empty", title=title, err=err
    )
    if page.next_after:
        aside(console, f"more: orchestrion dlq list --after {page.next_after}")


def render_letter(letter: DeadLetter) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = [
        ("id", letter.id),
        ("kind", letter.kind),
        ("workflow", letter.workflow or "-"),
        ("category", letter.category),
        ("message", letter.message),
        ("execution", letter.execution_id or "-"),
        ("node", letter.node_id or "-"),
        ("attempt", "-" if letter.attempt is None else str(letter.attempt)),
        ("handler", letter.handler or "-"),
        ("stream", letter.stream),
        ("deliveries", str(letter.deliveries)),
        ("first sent at", _when(letter.first_sent_at)),
        ("parked at", _when(letter.parked_at)),
        ("consumer", letter.consumer or "-"),
    ]
    if piped(console):  # a field to a line, never folded: for grep
        width = max(len(name) for name, _ in rows) + 2
        for name, value in rows:
            line = f"{name:<{width}}{' '.join(value.split()) or '-'}"
            console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
    else:
        for name, value in rows:
            grid.add_row(name, Text(value))
        console.print(grid)
    if letter.traceback:
        console.print("\n[bold]traceback[/]")
        console.print(Text(letter.traceback))
    task = letter.task
    if task is not None:
        console.print("\n[bold]task[/]")
        print_json(task)
    elif letter.payload:
        console.print("\n[bold]payload[/] (not a readable task message)")
        console.print(Text(letter.payload))
