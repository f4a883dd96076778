"""Tables the commands print: one line per row, on a terminal as in a pipe.

On a terminal, columns as wide as their values, never wrapped: when the row is wider than the
terminal, the columns of free text (a message, an output, a name) are cut with "…" first, and
columns marked optional are left out; an id is never cut, it is what the next command takes.
Piped (standard output not a terminal), plain text a script reads with ``grep``, ``awk`` or
``cut``: a header line, then one line per row, columns two spaces apart, nothing cut, styled
or empty (``-``), times in ISO 8601; a title, a hint and the note that there is nothing to
list ("no executions") go to stderr, so that stdout holds the rows alone. Every table says
what its empty note is (``print_table``'s ``empty``): no listing prints nothing at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.cells import cell_len
from rich.console import Console
from rich.text import Text

__all__ = ["Column", "aside", "piped", "print_table", "when"]

_GAP = 2  # spaces between two columns
_SHORTEST = 10  # what a cut column keeps at least


@dataclass(frozen=True)
class Column:
    """A column: its header, whether it is right-aligned, may be cut with "…" on a terminal
    (``cut``) or left out of a terminal too narrow for it (``optional``)."""

    header: str
    right: bool = False
    cut: bool = False
    optional: bool = False


def piped(console: Console) -> bool:
    """Whether ``console`` writes for a program rather than a person: plain output."""
    return not console.is_terminal


def aside(console: Console, message: str | Text) -> None:
    """A line about the table rather than of it (there is nothing to list, how to see more):
    on ``console`` for a person, on stderr when piped, where stdout holds the rows alone."""
    from orchestrion.cli.terminal import err

    (err if piped(console) else console).print(message, highlight=False, soft_wrap=True)


def when(ts: float | None, plain: bool, now: datetime | None = None) -> str:
    """A time in UTC: ISO 8601 piped; on a terminal as ``ls`` shows it, short: the time of
    day for today, the day and minute this year, the date before."""
    if ts is None:
        return "-"
    at = datetime.fromtimestamp(ts, UTC)
    if plain:
        return at.strftime("%Y-%m-%dT%H:%M:%SZ")
    now = now or datetime.now(UTC)
    if at.date() == now.date():
        return at.strftime("%H:%M:%S")
    return at.strftime("%b %d %H:%M" if at.year == now.year else "%Y-%m-%d")


def _one_line(cell: str | Text) -> Text:
    text = cell if isinstance(cell, Text) else Text(cell)
    for separator in ("\r\n", "\n", "\r", "\t"):
        if separator in text.plain:
            text = Text(" ").join(text.split(separator, allow_blank=True))
    return text


def print_table(
    console: Console,
    columns: Sequence[Column],
    rows: Sequence[Sequence[str | Text]],
    *,
    empty: str,
    title: str | Text | None = None,
    err: Console | None = None,
) -> None:
    """``rows`` under ``columns``: a rich table on a terminal, plain text piped (``title``
    then on ``err``, when given). No rows: the note ``empty`` ("no executions") alone, as
    ``aside`` prints it, and no header: piped, stdout stays empty for the script reading it."""
    if not rows:
        aside(console, empty)
        return
    cells = [[_one_line(cell) for cell in row] for row in rows]
    if piped(console):
        if title is not None and err is not None:
            err.print(title, highlight=False, soft_wrap=True)
        _print_plain(console, columns, cells)
        return
    widths = [
        max([cell_len(column.header), *(row[i].cell_len for row in cells)])
        for i, column in enumerate(columns)
    ]
    shown = list(range(len(columns)))

    def total() -> int:
        return sum(widths[i] for i in shown) + _GAP * (len(shown) - 1)

    for i in reversed(range(len(columns))):
        if total() > console.width and columns[i].optional:
            shown.remove(i)
    for i in sorted(shown, key=lambda i: -widths[i]):
        excess = total() - console.width
        if excess <= 0:
            break
        if columns[i].cut:
            floor = max(_SHORTEST, cell_len(columns[i].header))
            widths[i] = max(floor, widths[i] - excess)
    if title is not None:
        console.print(title, highlight=False, soft_wrap=True)
    right = [columns[i].right for i in shown]
    sizes = [widths[i] for i in shown]
    header = [Text(columns[i].header, style="bold") for i in shown]
    # Drawn line by line, not as a rich table, which narrows every column, ids too, to the
    # terminal: a row still wider (ids are never cut) is one line the terminal folds.
    for line in (header, *([row[i] for i in shown] for row in cells)):
        console.print(_line(line, sizes, right), highlight=False, soft_wrap=True)


def _line(cells: Sequence[Text], widths: Sequence[int], right: Sequence[bool]) -> Text:
    """One row: each cell cut with "…" to its column's width, padded, two spaces apart."""
    line = Text()
    last = len(cells) - 1
    for n, (cell, width, to_right) in enumerate(zip(cells, widths, right, strict=True)):
        if cell.cell_len > width:
            cell = cell.copy()
            cell.truncate(width, overflow="ellipsis")
        pad = " " * (width - cell.cell_len)
        if n:
            line.append(" " * _GAP)
        if to_right:
            line.append(pad)
        line.append_text(cell)
        if not to_right and n < last:
            line.append(pad)
    return line


def _print_plain(console: Console, columns: Sequence[Column], cells: list[list[Text]]) -> None:
    plain = [[column.header for column in columns]]
    plain += [[cell.plain or "-" for cell in row] for row in cells]
    widths = [max(cell_len(row[i]) for row in plain) for i in range(len(columns))]
    for row in plain:
        parts = []
        for i, value in enumerate(row):
            pad = " " * (widths[i] - cell_len(value))
            parts.append(pad + value if columns[i].right else value + pad)
        line = (" " * _GAP).join(parts).rstrip()
        console.print(line, markup=False, highlight=False, emoji=False, soft_wrap=True)
