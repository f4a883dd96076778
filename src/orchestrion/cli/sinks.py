"""``orchestrion sinks``: the event sinks and the events they owe, locally or through a server.

    orchestrion sinks list [--json]                 # each sink: what it owes, dead letters
    orchestrion sinks owed [--dead] [--sink NAME] [--limit N] [--json]
    orchestrion sinks retry ID                      # send it again now (a dead letter too)
    orchestrion sinks drop ID                       # that sink never gets the event

With ``--db`` (or the configured database) the commands read and change the store directly:
the process holding the publisher lease sends a retried event at its next pass. With
``--server`` they go through ``/v1/admin/sinks`` (admin key).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.text import Text

from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption
from orchestrion.cli.tables import Column, piped, print_table, when
from orchestrion.cli.terminal import console

__all__ = ["sinks_app"]

sinks_app = typer.Typer(
    name="sinks",
    help="Event sinks: what each owes, and retrying or dropping the events it did not take.",
    no_args_is_help=True,
)

DeliveryIdArgument = Annotated[
    int, typer.Argument(min=1, help="The delivery's id (see `orchestrion sinks owed`).")
]


def _sink_rows(server: str | None, api_key: str | None, db: str | None) -> list[dict[str, Any]]:
    if server:
        from orchestrion.cli import remote

        with remote.connected(server, api_key) as client:
            return [
                {"name": s.name, "type": s.type, "events": s.events, "owed": s.owed, "dead": s.dead}
                for s in client.sinks()
            ]

    async def read() -> list[dict[str, Any]]:
        from orchestrion.store.outbox import DeliveryStatus

        async with engine(db, resume=False) as local:
            counts = await local.deliveries.counts()
            config = local.sinks_config
            rows: dict[str, dict[str, Any]] = {
                sink.name: {"name": sink.name, "type": sink.type, "events": list(sink.events)}
                for sink in (config.sinks if config is not None else ())
            }
            for name, _ in counts:  # owed by a sink this process is not configured with
                rows.setdefault(name, {"name": name, "type": "-", "events": []})
            for row in rows.values():
                row["owed"] = counts.get((row["name"], DeliveryStatus.RETRY), 0)
                row["dead"] = counts.get((row["name"], DeliveryStatus.DEAD), 0)
            return sorted(rows.values(), key=lambda row: str(row["name"]))

    result: list[dict[str, Any]] = run_async(read())
    return result


@sinks_app.command(name="list")
def list_sinks(
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List the event sinks, what each owes and its dead letters."""
    rows = _sink_rows(server, api_key, db)
    if as_json:
        console.print_json(data=rows)
        return
    columns = [
        Column("sink"),
        Column("type"),
        Column("owed", right=True),
        Column("dead", right=True),
        Column("events", cut=True),
    ]
    table: list[list[str | Text]] = [
        [
            Text(row["name"]),
            row["type"],
            str(row["owed"]),
            str(row["dead"]),
            Text(",".join(row["events"])),
        ]
        for row in rows
    ]
    empty = "no event sinks (set ORCHESTRION_SINKS_FILE; see docs/EVENTS.md)"
    print_table(console, columns, table, empty=empty)


def _delivery_row(delivery: Any) -> dict[str, Any]:
    status = getattr(delivery.status, "value", delivery.status)
    event_type = getattr(delivery, "event_type", None) or delivery.event.get("type")
    return {
        "id": delivery.id,
        "sink": delivery.sink,
        "event_id": delivery.event_id,
        "event_type": event_type,
        "status": status,
        "attempts": delivery.attempts,
        "error": delivery.error,
        "next_at": delivery.next_at,
    }


@sinks_app.command(name="owed")
def owed(
    dead: Annotated[bool, typer.Option("--dead", help="Only dead letters.")] = False,
    sink: Annotated[str | None, typer.Option("--sink", help="Only this sink's.")] = None,
    limit: Annotated[int, typer.Option("--limit", min=1, max=500)] = 100,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List the events sinks did not take: to retry, or dead letters."""
    status = "dead" if dead else None
    if server:
        from orchestrion.cli import remote

        with remote.connected(server, api_key) as client:
            rows = [_delivery_row(d) for d in client.sink_deliveries(status, sink, limit)]
    else:

        async def read() -> list[dict[str, Any]]:
            from orchestrion.store.outbox import DeliveryStatus

            wanted = DeliveryStatus.DEAD if dead else None
            async with engine(db, resume=False) as local:
                return [_delivery_row(d) for d in await local.deliveries.list(wanted, sink, limit)]

        rows = run_async(read())
    if as_json:
        console.print_json(data=rows)
        return
    plain = piped(console)
    columns = [
        Column("id", right=True),
        Column("sink"),
        Column("event"),
        Column("event id"),
        Column("status"),
        Column("attempts", right=True),
        Column("next"),
        Column("error", cut=True),
    ]
    table: list[list[str | Text]] = [
        [
            str(row["id"]),
            Text(row["sink"]),
            Text(str(row["event_type"])),
            Text(str(row["event_id"])),
            row["status"],
            str(row["attempts"]),
            when(row["next_at"], plain) if row["status"] == "retry" else "-",
            Text(row["error"] or ""),
        ]
        for row in rows
    ]
    print_table(console, columns, table, empty="nothing owed" + (" (dead letters)" if dead else ""))


def _act(verb: str, delivery_id: int, db: str | None, server: str | None, key: str | None) -> None:
    if server:
        from orchestrion.cli import remote

        with remote.connected(server, key) as client:
            delivery = client.sink_delivery_action(delivery_id, verb)
    else:

        async def go() -> Any:
            async with engine(db, resume=False) as local:
                if verb == "retry":
                    return await local.deliveries.retry(delivery_id)
                return await local.deliveries.drop(delivery_id)

        delivery = run_async(go())
    done = "due again now" if verb == "retry" else "dropped"
    console.print(
        f"delivery {delivery_id} of {escape(delivery.event_id)} to {escape(delivery.sink)}: {done}",
        highlight=False,
    )


@sinks_app.command(name="retry")
def retry(
    delivery_id: DeliveryIdArgument,
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Send an event to its sink again now (a dead letter too; attempts from zero)."""
    _act("retry", delivery_id, db, server, api_key)


@sinks_app.command(name="drop")
def drop(
    delivery_id: DeliveryIdArgument,
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Drop an event a sink did not take: that sink never gets it."""
    _act("drop", delivery_id, db, server, api_key)
