"""``orchestrion logs``: the log lines node attempts wrote, locally or on ``--server``.

Locally the lines are read from the database (``--db``); on a server, through the API, masked
for the key's role as the API masks them. ``--follow`` keeps printing lines as running attempts
write them (a running attempt's lines are stored every half second) and ends once the
execution is final and every line was printed: on a server through the log stream, locally by
reading the database again every quarter of a second.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.text import Text

from orchestrion.cli.ids import resolve
from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import (
    ApiKeyOption,
    DbOption,
    ExecutionIdArgument,
    JsonOption,
    ServerOption,
)
from orchestrion.cli.pipes import gone
from orchestrion.cli.tables import aside
from orchestrion.cli.terminal import console, err

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["logs"]

_PAGE = 1000
_POLL = 0.25
_LEVEL_STYLES = {"WARNING": "yellow", "ERROR": "red", "CRITICAL": "bold red", "DEBUG": "dim"}

Line = dict[str, Any]


def logs(
    execution_id: ExecutionIdArgument,
    node: Annotated[
        str | None, typer.Argument(help="Only this node's lines (default: every node's).")
    ] = None,
    follow: Annotated[
        bool,
        typer.Option(
            "--follow", "-f", help="Keep printing lines as they are written, until the end."
        ),
    ] = False,
    attempt: Annotated[
        int | None, typer.Option("--attempt", "-a", min=1, help="Only this attempt's lines.")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show the log lines an execution's node attempts wrote (--json: one object a line)."""
    execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)
    printer = _printer(as_json, node is None)
    shown = 0

    def show(line: Line) -> None:
        nonlocal shown
        shown += 1
        printer(line)

    try:
        if server:
            _remote(server, api_key, execution_id, node, attempt, follow, show)
        else:
            run_async(_local(db, execution_id, node, attempt, follow, show))
    except KeyboardInterrupt:
        raise typer.Exit(0) from None
    if not shown and not gone():
        _nothing_shown(execution_id, node, attempt, as_json)


def _nothing_shown(execution_id: str, node: str | None, attempt: int | None, as_json: bool) -> None:
    """The note that there was no line to show, never on stdout where a script reads lines
    (--json: always on stderr)."""
    whose = f"node {node}" if node is not None else f"execution {execution_id}"
    which = f", attempt {attempt}" if attempt is not None else ""
    note = f"no log lines ({whose}{which})"
    if as_json:
        err.print(note, highlight=False, markup=False, soft_wrap=True)
    else:
        aside(console, Text(note))


def _local(
    db: str | None,
    execution_id: str,
    node: str | None,
    attempt: int | None,
    follow: bool,
    show: Callable[[Line], None],
) -> Any:
    async def go() -> None:
        import asyncio

        from orchestrion.core.states import FINAL_EXECUTION_STATES
        from orchestrion.store.base import LogFilter

        async with engine(db, resume=False) as local:
            if node is not None:  # a node the workflow has not: exit 3, not nothing shown
                await local.reads.check_node(await local.reads.execution(execution_id), node)
            after = 0
            while True:
                final = await _final(local, execution_id, FINAL_EXECUTION_STATES)
                while True:  # every page there is now
                    flt = LogFilter(execution_id, node, attempt, after, _PAGE)
                    lines = await local.reads.node_logs(flt)
                    for line in lines:
                        show(_fields(line))
                        after = line.seq
                        if gone():
                            return  # the reader left (`| head`): no one to print for
                    if len(lines) < _PAGE:
                        break
                if not follow or final:
                    return
                await asyncio.sleep(_POLL)

    return go()


async def _final(local: Engine, execution_id: str, final: Iterable[Any]) -> bool:
    record = await local.reads.execution(execution_id)  # ExecutionNotFound: exit 3
    return record.status in final


def _fields(line: Any) -> Line:
    names = ("seq", "node_id", "attempt", "at", "level", "logger", "message")
    return {name: getattr(line, name) for name in names}


def _remote(
    server: str,
    api_key: str | None,
    execution_id: str,
    node: str | None,
    attempt: int | None,
    follow: bool,
    show: Callable[[Line], None],
) -> None:
    from orchestrion.cli.remote import connected

    with connected(server, api_key) as client:
        if follow:
            for line in client.follow_logs(execution_id, node, attempt=attempt):
                show(_fields(line))
                if gone():
                    return
            return
        after = 0
        while True:
            page = client.logs(execution_id, node, attempt=attempt, after=after, limit=_PAGE)
            for line in page.items:
                show(_fields(line))
            if len(page.items) < _PAGE or gone():
                return
            after = page.next_after


def _printer(as_json: bool, with_node: bool) -> Callable[[Line], None]:
    if as_json:

        def show_json(line: Line) -> None:
            print(json.dumps(_wire(line), ensure_ascii=False), flush=True)

        return show_json

    def show(line: Line) -> None:
        stamp = datetime.fromtimestamp(float(line["at"])).strftime("%H:%M:%S.%f")[:-3]
        text = Text(f"{stamp} ")
        if with_node:
            text.append(f"{line['node_id']}#{line['attempt']} ", style="cyan")
        elif line["attempt"] != 1:
            text.append(f"#{line['attempt']} ", style="cyan")
        level = str(line["level"])
        text.append(f"{level:<7} ", style=_LEVEL_STYLES.get(level, ""))
        text.append(f"{line['logger']}: ", style="dim")
        # As text, never read as markup; a line break inside a message starts an indented
        # continuation, so a message cannot print a line that looks like another log line.
        text.append(str(line["message"]).replace("\n", "\n    "))
        console.print(text, highlight=False, soft_wrap=True)

    return show


def _wire(line: Line) -> Line:
    at = datetime.fromtimestamp(float(line["at"]), UTC).isoformat()
    return {**line, "at": at}
