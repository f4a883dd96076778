"""A compensation that failed leaves its node COMPLETED: every rendering of the command line
draws it as a failure (``✗ compensation_failed``), never with the check mark of a completed
node; one that succeeded is ``↺ compensated``. The progress of ``run`` in each of its modes
(lines, live table, the polled progress of ``--server`` without an event stream)."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console

from orchestrion.cli import remote
from orchestrion.cli.progress import ProgressView, node_mark
from orchestrion.core.events import Record
from orchestrion.core.record_types import RecordType
from orchestrion.core.result import NodeResult
from orchestrion.core.states import ExecutionStatus, NodeState

BROKE = {"message": "undo b broke"}


def _console(terminal: bool) -> Console:
    return Console(file=io.StringIO(), force_terminal=terminal, width=120, color_system=None)


def _records() -> list[Record]:
    done = NodeState.COMPLETED
    return [
        Record(type=RecordType.NODE_COMPLETED, at=1.0, node="a", attempt=1, state=done),
        Record(type=RecordType.NODE_COMPLETED, at=1.0, node="b", attempt=1, state=done),
        Record(
            type=RecordType.NODE_FAILED,
            at=1.0,
            node="d",
            attempt=1,
            state=NodeState.FAILED,
            error={"message": "d went wrong"},
        ),
        Record(
            type=RecordType.NODE_COMPENSATION_FAILED,
            at=2.0,
            node="b",
            attempt=1,
            state=done,
            error=BROKE,
        ),
        Record(
            type=RecordType.NODE_COMPENSATED,
            at=3.0,
            node="a",
            attempt=1,
            state=NodeState.COMPENSATED,
        ),
    ]


def test_node_mark_of_a_failed_and_a_done_compensation() -> None:
    assert node_mark(NodeState.COMPLETED, "failed") == ("✗", "bold red", "compensation_failed")
    assert node_mark(NodeState.COMPENSATED, "done")[::2] == ("↺", "compensated")
    assert node_mark(NodeState.COMPLETED, None)[::2] == ("✓", "completed")


def test_progress_lines_draw_a_failed_compensation_as_a_failure() -> None:
    console = _console(terminal=False)
    view = ProgressView(console, "saga v1", ("a", "b", "d"))
    view.on_records("x", _records())
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    [line] = [ln for ln in lines if "compensation_failed" in ln]
    assert "✗ b  compensation_failed  undo b broke" in line and "✓" not in line
    assert any("↺ a  compensated" in ln for ln in lines)


def test_the_live_table_draws_a_failed_compensation_as_a_failure() -> None:
    view = ProgressView(_console(terminal=False), "saga v1", ("a", "b", "d"))
    view.on_records("x", _records())
    shown = _console(terminal=True)
    shown.print(view._render())
    text = shown.file.getvalue()  # type: ignore[attr-defined]
    [row] = [line for line in text.splitlines() if " b " in line]
    assert row.split()[:3] == ["✗", "b", "compensation_failed"], text
    assert "✗ compensation_failed 1" in text.splitlines()[0]  # the summary counts it apart
    assert "✓ completed" not in text.splitlines()[0]


@dataclass
class _Status:
    nodes: dict[str, NodeResult]
    finished: bool = True
    status: ExecutionStatus = ExecutionStatus.FAILED


@dataclass
class _Client:
    """What ``_poll`` reads of a client: the execution, as a server without a stream says."""

    answers: list[_Status]
    asked: list[str] = field(default_factory=list)

    def status(self, execution_id: str, include_outputs: bool = True) -> _Status:
        self.asked.append(execution_id)
        return self.answers.pop(0)


def test_polled_progress_draws_a_failed_compensation_as_a_failure() -> None:
    done = NodeState.COMPLETED
    before = {
        "a": NodeResult("a", done, 1),
        "b": NodeResult("b", done, 1),
        "d": NodeResult("d", NodeState.FAILED, 1, error={"message": "d went wrong"}),
    }
    after = {
        "a": NodeResult("a", NodeState.COMPENSATED, 1, compensation="done"),
        "b": NodeResult("b", done, 1, error=BROKE, compensation="failed"),
        "d": before["d"],
    }
    client: Any = _Client([_Status(before, finished=False), _Status(after)])
    console = _console(terminal=False)
    view = ProgressView(console, "saga v1", ("a", "b", "d"))
    remote._poll(client, "x", view)  # type: ignore[attr-defined]
    lines = console.file.getvalue().splitlines()  # type: ignore[attr-defined]
    [line] = [ln for ln in lines if "compensation_failed" in ln]
    assert "✗ b  compensation_failed  undo b broke" in line
    assert view.compensations == {"b": "failed"}
