"""``orchestrion schedule``: the schedules of scheduled triggers, locally or through a server.

    orchestrion schedule list [--json]
    orchestrion schedule pause ID | resume ID | trigger-now ID | delete ID

An ``ID`` is ``<definition name>:<trigger name>``. With ``--db`` (or the configured database)
the command changes the store directly: the process that runs the scheduler (``orchestrion
serve``, an orchestrator) applies it on its next pass. With ``--server`` it asks the API.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption
from orchestrion.cli.tables import Column, piped, print_table, when
from orchestrion.cli.terminal import console

__all__ = ["schedule_app"]

schedule_app = typer.Typer(
    name="schedule",
    help="Schedules (scheduled triggers of definitions): list, pause, resume, fire now, delete.",
    no_args_is_help=True,
)

ScheduleIdArgument = Annotated[
    str, typer.Argument(help="The schedule: <definition name>:<trigger name>.")
]


def _rows(server: str | None, api_key: str | None, db: str | None) -> list[dict[str, Any]]:
    if server:
        from orchestrion.cli import remote

        with remote.connected(server, api_key) as client:
            return [
                {
                    "id": s.id,
                    "state": s.state,
                    "schedule": s.schedule,
                    "timezone": s.timezone,
                    "next_tick_at": s.next_tick_at,
                    "last_tick_at": s.last_tick_at,
                }
                for s in client.schedules()
            ]

    async def read() -> list[dict[str, Any]]:
        from orchestrion.engine.schedules import last_tick, upcoming_tick

        async with engine(db, resume=False) as local:
            now = datetime.now(UTC).timestamp()
            return [
                {
                    "id": record.id,
                    "state": record.state.value,
                    "schedule": record.spec["schedule"],
                    "timezone": record.spec["timezone"],
                    "next_tick_at": upcoming_tick(record, now),
                    "last_tick_at": last_tick(record),
                }
                for record in await local.schedules.all()
            ]

    result: list[dict[str, Any]] = run_async(read())
    return result


@schedule_app.command(name="list")
def list_schedules(
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List the schedules, their state, their next tick and (--json) their last one."""
    rows = _rows(server, api_key, db)
    if as_json:
        console.print_json(data=rows)
        return
    plain = piped(console)
    # The schedule last: a cron expression holds spaces, a script splits the line on them.
    columns = [Column(name) for name in ("id", "state", "timezone", "next tick", "schedule")]
    table: list[list[str | Text]] = [
        [
            Text(row["id"]),
            row["state"],
            Text(row["timezone"]),
            when(row["next_tick_at"], plain),
            Text(row["schedule"]),
        ]
        for row in rows
    ]
    empty = "no schedules (declare a `scheduled` trigger in a definition)"
    print_table(console, columns, table, empty=empty)


def _verb(verb: str, api_verb: str, doc: str, done: str) -> Callable[..., None]:
    """A command acting on one schedule: the engine's ``verb`` locally, ``api_verb`` remotely."""

    def command(
        schedule_id: ScheduleIdArgument,
        db: DbOption = None,
        server: ServerOption = None,
        api_key: ApiKeyOption = None,
    ) -> None:
        if server:
            from orchestrion.cli import remote

            with remote.connected(server, api_key) as client:
                client.schedule_action(schedule_id, api_verb)
        else:

            async def go() -> None:
                async with engine(db, resume=False) as local:
                    act: Callable[[str], Awaitable[Any]] = getattr(local.schedules, verb)
                    await act(schedule_id)

            run_async(go())
        console.print(done.format(escape(schedule_id)), highlight=False)

    command.__name__ = command.__qualname__ = verb
    command.__doc__ = doc
    return command


for _name, _api, _doc, _done in (
    ("pause", "pause", "Stop firing (ticks that pass while paused are not owed).", "paused {}"),
    ("resume", "resume", "Fire again from the next tick.", "resumed {}"),
    (
        "trigger_now",
        "trigger",
        "Fire once now: the scheduler starts it on its next pass.",
        "fired {} (the scheduler starts it on its next pass)",
    ),
    (
        "delete",
        "delete",
        "Delete a schedule until a new version of its definition declares it again.",
        "deleted {}",
    ),
):
    schedule_app.command(name=_name.replace("_", "-"))(_verb(_name, _api, _doc, _done))
