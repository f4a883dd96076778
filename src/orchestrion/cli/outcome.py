"""How a command that runs or drives executions ends: the result it shows, and the exit code
(0 completed, 1 failed or cancelled, 4 waiting for a person, with what to do next)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer

from orchestrion.cli.exits import EXIT_FAILED, EXIT_OK, EXIT_WAITING
from orchestrion.cli.terminal import console, err

if TYPE_CHECKING:
    from orchestrion.core.result import ExecutionResult
    from orchestrion.engine.facade import Engine

__all__ = ["Settled", "exit_for", "overall", "report", "settled"]

Settled = tuple["ExecutionResult", list[tuple[str, str]]]
"""A result and the (execution, node) decisions it waits for, children's included."""


async def settled(engine: Engine, execution_id: str) -> Settled:
    """Wait until the execution ends or waits for a person; what to show and to decide."""
    result = await engine.settle(execution_id)
    decisions = [
        (found.execution_id, found.node_id)
        for found in await engine.pending_decisions(execution_id)
    ]
    return result, decisions


def report(result: ExecutionResult, as_json: bool) -> None:
    """The result as JSON, or rendered with its nodes."""
    if as_json:
        console.print_json(json.dumps(result.to_dict(), default=str))
        return
    from orchestrion.cli.render import render_result

    render_result(console, result)


def exit_for(
    result: ExecutionResult,
    db: str | None,
    decisions: list[tuple[str, str]] | None = None,
    server: str | None = None,
) -> None:
    """Exit 0 completed, 1 failed/cancelled, 4 waiting for a person (with what to do next).

    ``decisions`` lists the waiting nodes, children's included; by default the result's own.
    """
    from orchestrion.cli.handover import print_decisions
    from orchestrion.core.reasons import DECIDABLE_WAITS
    from orchestrion.core.states import ExecutionStatus

    if result.status is ExecutionStatus.WAITING:
        if decisions is None:
            decisions = [
                (result.execution_id, node.node_id)
                for node in result.nodes.values()
                if node.wait_reason in DECIDABLE_WAITS
            ]
        where = f" --server {server}" if server else f" --db {db}" if db else ""
        print_decisions(err, decisions, where)
        raise typer.Exit(EXIT_WAITING)
    raise typer.Exit(EXIT_OK if result.ok else EXIT_FAILED)


def overall(results: list[ExecutionResult]) -> ExecutionResult:
    """The result whose outcome decides the exit code: a waiting one, else a failed one."""
    from orchestrion.core.states import ExecutionStatus

    for result in results:
        if result.status is ExecutionStatus.WAITING:
            return result
    for result in results:
        if not result.ok:
            return result
    return results[0]
