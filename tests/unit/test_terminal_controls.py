"""What the commands print shows control characters instead of obeying them (cli/terminal.py)."""

from __future__ import annotations

import io
import re

import pytest
from rich.table import Table
from rich.text import Text

from orchestrion.cli.terminal import SafeConsole, printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("\x1b[2J", "\\x1b[2J"),  # clear the screen
        ("\x1b]0;title\x07", "\\x1b]0;title\\x07"),  # set the window title
        ("\x1b]52;c;aGk=\x07", "\\x1b]52;c;aGk=\\x07"),  # write the clipboard
        ("\x9b31m", "\\x9b31m"),  # C1 CSI
        ("a\x08b\x7f", "a\\x08b\\x7f"),
        ("\u202eevil\u2066", "\\u202eevil\\u2066"),  # bidirectional overrides
        ("tab\tand\nline", "tab\tand\nline"),  # kept
        ("café ✓ 日本", "café ✓ 日本"),  # printable text is untouched
    ],
)
def test_printable_escapes_what_a_terminal_acts_on(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(printable(raw)) == printable(raw)


@pytest.mark.parametrize(
    "renderable",
    [
        "plain \x1b[2J",
        Text("styled \x1b[2J", style="red"),
        Text.assemble(("a", "bold"), "\x1b]0;t\x07"),
    ],
    ids=["str", "text", "assembled"],
)
def test_the_console_escapes_them_in_every_renderable(renderable: object) -> None:
    out = io.StringIO()
    console = SafeConsole(file=out, force_terminal=True, width=120)
    table = Table()
    table.add_column("c")
    table.add_row(Text("cell \x1b[31m"))
    console.print(renderable, highlight=False)
    console.print(table)
    text = out.getvalue()
    assert "\x1b" not in re.sub("\x1b\\[[0-9;]*m", "", text), repr(text)
    assert "\\x1b" in text
