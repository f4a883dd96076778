"""``orchestrion status``, ``events`` and ``list``: executions looked at, locally or on
``--server``, without changing them."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.cli.ids import resolve
from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import (
    ApiKeyOption,
    DbOption,
    ExecutionIdArgument,
    JsonOption,
    ServerOption,
)
from orchestrion.cli.outcome import report
from orchestrion.cli.terminal import console, fail

if TYPE_CHECKING:
    from orchestrion.core.result import ExecutionResult

__all__ = ["events", "list_", "status"]


def status(
    execution_id: ExecutionIdArgument,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show an execution's state, its nodes, attempts, errors and result."""
    execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)

    async def go() -> ExecutionResult:
        async with engine(db, resume=False) as local:
            return await local.result(execution_id)

    if server:
        from orchestrion.cli import remote

        result = remote.status(server, api_key, execution_id)
    else:
        result = run_async(go())
    report(result, as_json)


def events(
    execution_id: ExecutionIdArgument,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show an execution's journal: every attempt of every node, with its error and timing."""
    from orchestrion.cli import journal

    execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)

    async def go() -> list[dict[str, Any]]:
        async with engine(db, resume=False) as local:
            return await journal.local_events(local, execution_id)

    rows = journal.remote_events(server, api_key, execution_id) if server else run_async(go())
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    journal.render_events(console, rows)


def list_(
    db: DbOption = None,
    state: Annotated[
        list[str] | None, typer.Option("--status", "-s", help="Filter by status (repeatable).")
    ] = None,
    workflow: Annotated[str | None, typer.Option("--workflow", "-w")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=1000)] = 20,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List executions, newest first."""
    from orchestrion.core.states import ExecutionStatus
    from orchestrion.store.base import ExecutionFilter

    try:
        statuses = [ExecutionStatus(s.lower()) for s in state] if state else None
    except ValueError:
        fail(EXIT_INVALID, f"unknown status in {state}: use {[s.value for s in ExecutionStatus]}")

    async def go() -> list[dict[str, Any]]:
        async with engine(db, resume=False) as local:
            flt = ExecutionFilter(status=statuses, definition_name=workflow, limit=limit)
            records, _cursor = await local.list_executions(flt)
            rows = []
            for record in records:
                definition = await local.store.get_definition(record.definition_id)
                rows.append(
                    {
                        "id": record.id,
                        "workflow": definition.name,
                        "version": definition.version,
                        "status": record.status.value,
                        "created_at": record.created_at,
                        "started_at": record.started_at,
                        "finished_at": record.finished_at,
                    }
                )
            return rows

    if server:
        from orchestrion.cli import remote

        rows = remote.list_rows(server, api_key, statuses, workflow, limit)
    else:
        rows = run_async(go())
    if as_json:
        from orchestrion.cli.shapes import list_row

        console.print_json(json.dumps([list_row(row) for row in rows]))
        return
    from orchestrion.cli.render import render_list

    render_list(console, rows)
