"""Tables for execution results and lists, shared by the CLI commands."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.text import Text

from orchestrion.cli.progress import node_mark
from orchestrion.cli.tables import Column, aside, piped, print_table, when
from orchestrion.cli.terminal import err
from orchestrion.core.result import ExecutionResult, NodeResult, duration_ms
from orchestrion.core.states import ExecutionStatus
from orchestrion.governance.trust import Trust

__all__ = ["render_list", "render_result"]

_STATUS_STYLE = {
    ExecutionStatus.COMPLETED: "bold green",
    ExecutionStatus.FAILED: "bold red",
    ExecutionStatus.CANCELLED: "magenta",
    ExecutionStatus.RUNNING: "cyan",
    ExecutionStatus.WAITING: "yellow",
    ExecutionStatus.PAUSED: "yellow",
    ExecutionStatus.PENDING: "dim",
}
_PREVIEW = 70
_MAX_ROWS = 60


def _preview(value: Any, whole: bool = False) -> str:
    """A value on one line: cut to ``_PREVIEW`` characters on a terminal; ``whole`` (piped),
    nothing cut, for the scripts that read it."""
    if value is None:
        return ""
    # The characters as they are (the console escapes those a terminal would act on).
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    if whole:
        return " ".join(text.splitlines())
    return text if len(text) <= _PREVIEW else text[: _PREVIEW - 1] + "…"


def _time(node: NodeResult) -> str:
    """A node's time as the API's ``duration_ms`` gives it (its attempt's, a wait of its own
    included, neither a retry's backoff nor its compensation); the part spent waiting (a
    delay, a person) shown apart. Every attempt's times: ``orchestrion events``."""
    ms = duration_ms(node.started_at, node.finished_at)
    if ms is None:
        return "-"
    waited = node.waited
    return f"{ms / 1000:.3f}s" + (f" (waited {waited:.3f}s)" if waited else "")


def render_result(console: Console, result: ExecutionResult) -> None:
    """The node table, then the status line and the workflow's result."""
    columns = [
        Column("node"),
        Column("state"),
        Column("attempts", right=True),
        Column("time", right=True),
        Column("output / error", cut=True),
    ]
    rows: list[list[str | Text]] = []
    nodes = list(result.nodes.values())
    whole = piped(console)
    for node in nodes[:_MAX_ROWS]:
        symbol, style, word = node_mark(node.state, node.compensation)
        if node.compensation == "failed" and node.error:
            failed = f"compensation failed: {node.error.get('message')}"
            detail = Text(_preview(failed, whole), "red")
        elif node.error and node.state.value != "completed":
            detail = Text(_preview(node.error.get("message"), whole), style="red")
        else:
            detail = Text(_preview(node.output, whole))
        state = word if piped(console) else f"{symbol} {word}"
        rows.append(
            [
                Text(node.node_id, style=style),
                Text(state, style=style),
                str(node.attempt),
                _time(node),
                detail,
            ]
        )
    more = f"… {len(nodes) - _MAX_ROWS} more nodes" if len(nodes) > _MAX_ROWS else None
    title = Text(f"{result.workflow} v{result.version}")
    if piped(console):
        # What a script reads of the table is its header and rows alone: the title and the
        # count of rows left out go to stderr, and a blank line ends the table.
        print_table(console, columns, rows, empty="no nodes", title=title, err=err)
        if more:
            err.print(more, highlight=False)
        console.print()
    else:
        print_table(
            console,
            columns,
            rows + ([[more, "", "", "", ""]] if more else []),
            empty="no nodes",
            title=title,
        )
    style = _STATUS_STYLE.get(result.status, "")
    took = f" in {result.duration:.3f}s" if result.duration is not None else ""
    console.print(
        Text.assemble(
            ("execution ", ""),
            (result.execution_id, "bold"),
            (" ", ""),
            (result.status.value, style),
            (took, ""),
            ("" if Trust.of(result.trust).trusted else " (untrusted)", "yellow"),
        ),
        soft_wrap=True,  # one line, however narrow the terminal or the pipe's 80 columns
    )
    if result.error:
        message = f"error: {result.error.get('message', result.error)}"
        console.print(Text(message, style="red"), soft_wrap=True)
    _render_criteria(console, result)
    _render_routing(console, result)
    if any(node.attempt > 1 for node in nodes):
        aside(
            console,
            Text(f"every attempt and its error: orchestrion events {result.execution_id}", "dim"),
        )
    if result.result is not None:
        console.print("result:")
        console.print_json(json.dumps(result.result, default=str))


def _render_criteria(console: Console, result: ExecutionResult) -> None:
    """One line per success criterion: passed, failed or not evaluated, and why."""
    if not result.success_criteria:
        return
    console.print("success criteria:")
    for criterion in result.success_criteria:
        if criterion.passed is None:
            mark, style = "·", "dim"
        elif criterion.passed:
            mark, style = "✓", "green"
        else:
            mark, style = "✗", "red" if criterion.required else "yellow"
        kind = "required" if criterion.required else "optional"
        state = {None: "not evaluated", True: "passed", False: "failed"}[criterion.passed]
        line = f"  {mark} {criterion.condition} ({kind}): {state}"
        if criterion.detail:
            line += f" - {criterion.detail}"
        console.print(Text(line, style=style), soft_wrap=True)


def _render_routing(console: Console, result: ExecutionResult) -> None:
    """One line per routing rule (its ``routing-<n>`` node): fired, waiting, decided or not."""
    rules = [node for node in result.nodes.values() if _ROUTING_NODE.match(node.node_id)]
    if not rules:
        return
    console.print("routing:")
    for node in rules:
        output = node.output if isinstance(node.output, dict) else {}
        found = output.get("notice")
        notice: dict[str, Any] = found if isinstance(found, dict) else {}
        state = node.state.value
        if state == "completed" and output.get("fired"):
            teams = ", ".join(str(t) for t in notice.get("teams") or [])
            line, style = f"  ⚑ {node.node_id} {output.get('action')}: fired, to {teams}", "yellow"
        elif state == "completed" and "approved" in output:
            who = output.get("decided_by") or "someone"
            line, style = f"  ✓ {node.node_id} require_approval: approved by {who}", "green"
        elif state == "completed" or state == "skipped":
            why = " (the run ended first)" if node.wait_reason == "run_ended" else ""
            line, style = f"  · {node.node_id}: not fired{why}", "dim"
        elif state == "waiting" and node.wait_reason == "approval":
            line, style = f"  ⏸ {node.node_id} require_approval: waiting for a decision", "yellow"
        elif state == "waiting" and node.wait_reason == "routing":
            line, style = f"  · {node.node_id}: not fired yet (watching the run)", "dim"
        elif state == "failed":
            message = (node.error or {}).get("message", "failed")
            line, style = f"  ✗ {node.node_id}: {message}", "red"
        else:
            line, style = f"  · {node.node_id}: {state}", "dim"
        console.print(Text(line, style=style), soft_wrap=True)


_ROUTING_NODE = re.compile(r"^routing-[0-9]+$")


def render_list(console: Console, rows: list[dict[str, Any]]) -> None:
    """Executions, one line each: piped, the workflow's name and version in two columns."""
    plain = piped(console)
    columns = [Column("id"), Column("workflow", cut=True)]
    columns += [Column("version")] if plain else []
    columns += [Column("status"), Column("created"), Column("finished", optional=True)]
    now = datetime.now(UTC)
    table: list[list[str | Text]] = []
    for row in rows:
        status = ExecutionStatus(row["status"])
        name = [Text(row["workflow"]), str(row["version"])]
        table.append(
            [
                Text(row["id"]),
                *(name if plain else [Text(f"{row['workflow']} v{row['version']}")]),
                Text(status.value, style=_STATUS_STYLE.get(status, "")),
                when(row["created_at"], plain, now),
                when(row["finished_at"], plain, now),
            ]
        )
    print_table(console, columns, table, empty="no executions")
