"""The tables `orchestrion` prints, one line per row: on a real terminal (a pty) 80, 100 and
200 columns wide, and piped, as plain columns a script splits; real processes, a SQLite file."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from datetime import datetime
from pathlib import Path

import pytest
from rich.cells import cell_len

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "orchestrion.cli.app"]
WIDTHS = [80, 100, 200]
FAILING = """\
import os
def until_fixed(path):
    if not os.path.exists(path):
        raise RuntimeError("the marker file is missing, so this step cannot go on: " + path)
    return "fixed"
"""
FLOW = """\
name: a-workflow-with-a-long-name
dag:
  nodes:
    - id: enrich
      handler: python
      retry: {max_attempts: 2, initial_delay: 0.01, retry_on: [all]}
      config: {function: "tablemod:until_fixed", params: {path: "@FLAG@"}}
"""
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _env(folder: Path, columns: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().endswith("_PROXY")}
    path = [str(folder), os.environ.get("PYTHONPATH", "")]
    env.update({"COLUMNS": str(columns), "PYTHONPATH": os.pathsep.join(filter(None, path))})
    env.pop("NO_COLOR", None)
    return env


def run_piped(folder: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    """``orchestrion args`` with its stdout and stderr piped (both kept apart)."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=folder,
        env=_env(folder, columns),
    )


def piped(folder: Path, *args: str, columns: int = 80) -> str:
    done = run_piped(folder, *args, columns=columns)
    assert done.returncode == 0, done.stderr
    return done.stdout


def on_terminal(folder: Path, *args: str, columns: int) -> list[str]:
    """What ``orchestrion args`` shows on a terminal ``columns`` wide, colours taken off."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    process = subprocess.Popen(
        [*CLI, *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        cwd=folder,
        env=_env(folder, columns),
    )
    os.close(follower)
    shown = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError as exc:  # EIO: the process closed the terminal
            assert exc.errno == errno.EIO
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    assert process.wait(60) == 0
    text = _ANSI.sub("", shown.decode()).replace("\r\n", "\n")
    return [line.rstrip() for line in text.splitlines()]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tables")
    (folder / "tablemod.py").write_text(FAILING)
    (folder / "flow.yaml").write_text(FLOW.replace("@FLAG@", str(folder / "missing")))
    env = _env(folder, 200)
    for flow, code in ((ROOT / "examples" / "demo.yaml", 0), (folder / "flow.yaml", 1)):
        for _ in range(2):
            ran = subprocess.run(
                [*CLI, "run", str(flow), "--db", "t.db"],
                capture_output=True,
                timeout=120,
                cwd=folder,
                env=env,
            )
            assert ran.returncode == code, ran.stderr
    return folder


def _ids(folder: Path) -> list[str]:
    return [
        row["execution_id"] for row in json.loads(piped(folder, "list", "--db", "t.db", "--json"))
    ]


def _one_line_each(lines: list[str], keys: list[str]) -> list[str]:
    """The line of each key: there is exactly one."""
    found = []
    for key in keys:
        holding = [line for line in lines if key in line]
        assert len(holding) == 1, (key, lines)
        found.append(holding[0])
    return found


@pytest.mark.parametrize("columns", WIDTHS)
def test_list_on_a_terminal_shows_each_execution_on_one_line(folder: Path, columns: int) -> None:
    lines = on_terminal(folder, "list", "--db", "t.db", columns=columns)
    ids = _ids(folder)
    assert len(lines) == 1 + len(ids)  # the header, a line a row
    assert all(cell_len(line) <= columns for line in lines), lines
    for line in _one_line_each(lines, ids):
        assert re.search(r"(completed|failed) +\d\d:\d\d:\d\d", line), line  # whole, not cut
        # The name is what gives way (cut with "…") when the terminal is narrow.
        assert "orchestrion-demo v1" in line or "a-workflow-with-a" in line
        assert ("a-workflow-with-a-long-name v1" in line) == (
            "a-workflow" in line and columns >= 100
        )
    assert lines[0].split()[:4] == ["id", "workflow", "status", "created"]
    assert ("finished" in lines[0]) == (columns >= 100)


@pytest.mark.parametrize("columns", WIDTHS)
def test_list_piped_is_plain_columns_a_script_splits(folder: Path, columns: int) -> None:
    out = piped(folder, "list", "--db", "t.db", columns=columns)
    assert out == piped(folder, "list", "--db", "t.db", columns=200)  # the width does not matter
    header, *rows = [line.split() for line in out.splitlines()]
    assert header == ["id", "workflow", "version", "status", "created", "finished"]
    assert [row[0] for row in rows] == _ids(folder)
    for row in rows:
        assert len(row) == 6 and row[2] == "1" and row[3] in ("completed", "failed")
        for stamp in row[4:]:
            datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")
    assert "\x1b" not in out


@pytest.mark.parametrize("columns", WIDTHS)
def test_status_and_events_on_a_terminal_keep_a_node_to_a_line(folder: Path, columns: int) -> None:
    failed = _ids(folder)[0]  # newest first: the failing flow ran last
    lines = on_terminal(folder, "status", failed, "--db", "t.db", columns=columns)
    header = lines.index("node    state     attempts    time  output / error")
    [row] = [line for line in lines if line.startswith("enrich ")]
    assert lines[header + 1] == row and cell_len(row) <= columns
    assert re.search(r"enrich +✗ failed +2 ", row) and "the marker file" in row
    events = on_terminal(folder, "events", failed, "--db", "t.db", columns=columns)
    assert all(cell_len(line) <= columns for line in events), events
    retried = [line for line in events if "node.retry_scheduled" in line]
    assert len(retried) == 1 and re.match(
        r" *\d+ +\+\d+\.\d{3}s +enrich +1 +node\.retry", retried[0]
    )
    if columns == 200:  # room enough: the whole message, on the same line
        assert "so this step cannot go on" in retried[0]


def test_events_and_status_piped_are_a_row_to_a_line(folder: Path) -> None:
    failed = _ids(folder)[0]
    out = piped(folder, "events", failed, "--db", "t.db")
    journal = out.split("\n\n")[0].splitlines()
    assert journal[0].split() == ["seq", "time", "node", "attempt", "event", "detail"]
    for line in journal[1:]:
        fields = line.split()
        assert fields[0].isdigit() and fields[1].startswith("+"), line
    [retry] = [line for line in journal if "node.retry_scheduled" in line]
    assert "the marker file is missing, so this step cannot go on: " in retry  # never cut
    status = piped(folder, "status", failed, "--db", "t.db")
    [row] = [line for line in status.splitlines() if line.startswith("enrich ")]
    assert row.split()[:3] == ["enrich", "failed", "2"]


@pytest.mark.parametrize("columns", WIDTHS)
def test_dead_letters_on_a_terminal_and_piped(folder: Path, columns: int) -> None:
    entries = [f"{i}.enrich" for i in _ids(folder)[:2]]
    lines = on_terminal(folder, "dlq", "list", "--db", "t.db", columns=columns)
    assert all(cell_len(line) <= columns for line in lines), lines
    for line in _one_line_each(lines, entries):
        assert re.search(r"\d\d:\d\d:\d\d +RuntimeError", line), line
    out = piped(folder, "dlq", "list", "--db", "t.db", columns=columns)
    header, *rows = out.splitlines()
    assert header.split()[:3] == ["id", "kind", "category"]
    assert sorted(row.split()[0] for row in rows) == sorted(entries)


def test_a_dead_letter_shown_piped_is_a_field_to_a_line(folder: Path) -> None:
    entry = f"{_ids(folder)[0]}.enrich"
    out = piped(folder, "dlq", "show", entry, "--db", "t.db", columns=80)
    [message] = [line for line in out.splitlines() if line.startswith("message ")]
    assert "so this step cannot go on: " in message and message.endswith("missing")
    assert [line.split()[1] for line in out.splitlines() if line.startswith("id ")] == [entry]


@pytest.mark.parametrize("columns", [40, 60])
def test_a_terminal_too_narrow_for_a_row_never_cuts_an_id(folder: Path, columns: int) -> None:
    # The row is wider than the terminal even with free text cut: it comes out as one line
    # the terminal folds, the id whole (it is what the next command takes).
    ids = _ids(folder)
    lines = on_terminal(folder, "list", "--db", "t.db", columns=columns)
    assert len(lines) == 1 + len(ids)
    _one_line_each(lines, ids)
    letters = on_terminal(folder, "dlq", "list", "--db", "t.db", columns=columns)
    failed = [line for line in letters if ".enrich" in line]
    assert failed and all(re.search(r"[0-9a-f-]{36}\.enrich", line) for line in failed), letters


def test_status_piped_keeps_its_summary_lines_whole(folder: Path) -> None:
    # The lines after the table (the execution's state, its error) are not folded at the
    # pipe's 80 columns either: a script finds each on one line.
    [failed, *_] = [
        row["execution_id"]
        for row in json.loads(piped(folder, "list", "--db", "t.db", "--json"))
        if row["status"] == "FAILED"
    ]
    done = run_piped(folder, "status", failed, "--db", "t.db")
    lines = done.stdout.splitlines()
    [error] = [line for line in lines if line.startswith("error:")]
    assert str(folder / "missing") in error, lines
    assert any(line.startswith(f"execution {failed} failed") for line in lines), lines


def test_status_piped_is_its_table_alone_the_title_on_stderr(folder: Path) -> None:
    # `orchestrion status ID | ...`: the header and a line a node, a blank line, then the
    # execution's lines; the workflow's name and the hint to read the journal go to stderr.
    failed = _ids(folder)[0]
    done = run_piped(folder, "status", failed, "--db", "t.db")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    table = lines[: lines.index("")]
    assert table[0].split() == ["node", "state", "attempts", "time", "output", "/", "error"]
    assert [row.split()[:3] for row in table[1:]] == [["enrich", "failed", "2"]]
    assert lines[lines.index("") + 1].startswith(f"execution {failed} failed")
    assert "a-workflow-with-a-long-name" not in done.stdout
    assert "a-workflow-with-a-long-name v1" in done.stderr
    assert "every attempt and its error" in done.stderr
    assert "every attempt and its error" not in done.stdout
    # On a terminal the title heads the table, as before.
    shown = on_terminal(folder, "status", failed, "--db", "t.db", columns=100)
    assert shown[0] == "a-workflow-with-a-long-name v1", shown


@pytest.mark.parametrize(
    ("command", "note"),
    [
        (["list", "--status", "paused"], "no executions"),
        (["dlq", "list", "--since", "2999-01-01T00:00:00Z"], "the dead letter queue is empty"),
        (["schedule", "list"], "no schedules"),
        (["sinks", "list"], "no event sinks"),
        (["sinks", "owed"], "nothing owed"),
        (["audit", "list", "--since", "2999-01-01T00:00:00Z"], "no audit records"),
    ],
)
def test_an_empty_listing_piped_prints_no_row(folder: Path, command: list[str], note: str) -> None:
    # Nothing to list: stdout, which a script reads as rows, stays empty; the note is on
    # stderr (on a terminal, where the table would be).
    done = run_piped(folder, *command, "--db", "t.db")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "" and note in done.stderr, done
    assert any(note in line for line in on_terminal(folder, *command, "--db", "t.db", columns=80))


@pytest.mark.parametrize("as_json", [False, True])
def test_logs_without_a_line_say_so_on_stderr(folder: Path, as_json: bool) -> None:
    # An attempt that wrote nothing: no line on stdout for the script, the note on stderr.
    execution = _ids(folder)[0]
    args = ["logs", execution, "enrich", "--attempt", "9", "--db", "t.db"]
    done = run_piped(folder, *args, *(["--json"] if as_json else []))
    assert done.returncode == 0, done.stderr
    assert done.stdout == "", done
    assert done.stderr == "no log lines (node enrich, attempt 9)\n", done
    if not as_json:
        shown = on_terminal(folder, *args, columns=80)
        assert "no log lines (node enrich, attempt 9)" in shown, shown


def test_output_text_shows_its_characters_and_escapes_controls(tmp_path: Path) -> None:
    (tmp_path / "accentmod.py").write_text(
        "def words():\n    return {'text': 'café naïve 東京', 'bell': '\\x07\\u202e'}\n"
    )
    (tmp_path / "accent.yaml").write_text(
        "name: accents\ndag:\n  nodes:\n"
        "    - {id: w, handler: python, config: {function: 'accentmod:words'}}\n"
    )
    done = run_piped(tmp_path, "run", "accent.yaml", "-q", "--db", str(tmp_path / "a.db"))
    assert done.returncode == 0, done.stderr
    row = next(line for line in done.stdout.splitlines() if line.lstrip().startswith("w "))
    assert "café naïve 東京" in row and "\\u00e9" not in row
    assert "\x07" not in done.stdout and "\u202e" not in done.stdout
    assert "\\u0007" in row or "\\x07" in row
