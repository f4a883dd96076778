"""``orchestrion versions``: the versions of a definition, locally or through a server.

    orchestrion versions list NAME [--json]
    orchestrion versions activate NAME VERSION
    orchestrion versions deprecate NAME VERSION

The active version of a name (the one activated, else the newest available one) is what its
event triggers and schedules start, and what a start naming no version runs. Running
executions keep their version (``engine/versions.py`` says why).
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption
from orchestrion.cli.tables import Column, piped, print_table, when
from orchestrion.cli.terminal import console, err

__all__ = ["versions_app"]

versions_app = typer.Typer(
    name="versions",
    help="Versions of a definition: list them, activate one, deprecate one.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="The definition's name.")]
VersionArgument = Annotated[str, typer.Argument(help="The version.")]


def _local_user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def _rows(
    name: str, server: str | None, api_key: str | None, db: str | None
) -> list[dict[str, Any]]:
    if server:
        from orchestrion.cli import remote

        with remote.connected(server, api_key) as client:
            return [
                {
                    "version": v.version,
                    "status": v.status,
                    "active": bool(v.active),
                    "created_at": v.created_at,
                    "created_by": v.created_by,
                    "status_changed_at": v.status_changed_at,
                    "status_changed_by": v.status_changed_by,
                    "id": v.id,
                }
                for v in client.versions(name)
            ]

    async def read() -> list[dict[str, Any]]:
        async with engine(db, resume=False) as local:
            records, active = await local.versions(name)
            return [
                {
                    "version": r.version,
                    "status": r.status,
                    "active": r.id == active,
                    "created_at": r.created_at,
                    "created_by": r.created_by,
                    "status_changed_at": r.status_changed_at,
                    "status_changed_by": r.status_changed_by,
                    "id": r.id,
                }
                for r in records
            ]

    result: list[dict[str, Any]] = run_async(read())
    return result


@versions_app.command(name="list")
def list_versions(
    name: NameArgument,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List a definition's versions: status, who created each and when, the active one."""
    rows = _rows(name, server, api_key, db)
    if as_json:
        console.print_json(data=rows)
        return
    plain = piped(console)
    columns = [
        Column("version"),
        Column("active"),
        Column("status"),
        Column("created"),
        Column("by", cut=True),
        Column("status changed"),
        Column("changed by", cut=True),
    ]
    table: list[list[str | Text]] = []
    for row in rows:
        changed = row["status_changed_at"]
        table.append(
            [
                Text(row["version"]),
                "yes" if row["active"] else "-",
                row["status"],
                when(row["created_at"], plain),
                Text(row["created_by"] or "-"),
                when(changed, plain),
                Text("-" if changed is None else row["status_changed_by"] or "?"),
            ]
        )
    title = Text(f"versions of {name}")
    empty = f"no versions of {name}"
    print_table(console, columns, table, empty=empty, title=title, err=err)


def _verb(verb: str, doc: str) -> Callable[..., None]:
    """``activate`` or ``deprecate`` one version: the engine's verb locally, the API's remotely."""

    def command(
        name: NameArgument,
        version: VersionArgument,
        db: DbOption = None,
        server: ServerOption = None,
        api_key: ApiKeyOption = None,
    ) -> None:
        if server:
            from orchestrion.cli import remote

            with remote.connected(server, api_key) as client:
                getattr(client, verb)(name, version)
        else:

            async def go() -> None:
                async with engine(db, resume=False) as local:
                    await getattr(local, verb)(name, version, by=_local_user())

            run_async(go())
        console.print(f"{verb}d {escape(name)} version {escape(version)}", highlight=False)

    command.__name__ = command.__qualname__ = verb
    command.__doc__ = doc
    return command


versions_app.command(name="activate")(
    _verb(
        "activate",
        "Make a version the active one: triggers, schedules and starts naming no version use "
        "it; running executions keep theirs.",
    )
)
versions_app.command(name="deprecate")(
    _verb("deprecate", "Retire a version: never the active one again; a start may still name it.")
)
