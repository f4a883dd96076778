"""``orchestrion emit TYPE --data JSON``: send an event, locally on ``--db`` or to ``--server``.

Locally the embedded engine starts the workflows listening to the event and runs them until
they end or wait for a person (as ``orchestrion run`` does); on a server they run there, and
the command prints what the event started.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from orchestrion.cli.exits import EXIT_FAILED, EXIT_INVALID, EXIT_WAITING
from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption
from orchestrion.cli.terminal import console, fail

__all__ = ["emit"]


def emit(
    event_type: Annotated[str, typer.Argument(help="The event's type, such as policy.updated.")],
    data: Annotated[str, typer.Option("--data", "-d", help="The payload: a JSON object.")] = "{}",
    event_id: Annotated[
        str | None,
        typer.Option("--id", help="The event's id: the same id again starts nothing twice."),
    ] = None,
    submit: Annotated[
        list[Path] | None,
        typer.Option(
            "--submit",
            help="Store this definition first (its name's latest version); repeatable;"
            " local only (a server takes definitions through its API).",
        ),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Send an event: start every workflow with a trigger for its type."""
    payload = _payload(data)
    if server and submit:
        fail(EXIT_INVALID, "--submit is for the local database: submit to a server by its API")
    if server:
        from orchestrion.cli.remote import connected

        with connected(server, api_key) as client:
            answer = client.emit(event_type, payload, event_id=event_id)
        body: dict[str, Any] = {
            "event_id": answer.event_id,
            "event_type": answer.event_type,
            "executions": [
                {"execution_id": e.execution_id, "workflow": e.workflow, "version": e.version,
                 "definition_id": e.definition_id, "trigger": e.trigger,
                 "status": e.status.value.upper()}
                for e in answer.executions
            ],
            "skipped": [
                {"workflow": s.workflow, "trigger": s.trigger, "reason": s.reason,
                 "message": s.message}
                for s in answer.skipped
            ],
            "message": answer.message,
        }  # fmt: skip
    else:
        body = run_async(_emit_here(db, event_type, payload, event_id, submit or []))
    _print(body, as_json)
    # As `orchestrion run`: 4 when one waits for a person, else 1 when one failed.
    states = {e["status"] for e in body["executions"]}
    if "WAITING" in states:
        raise typer.Exit(EXIT_WAITING)
    if states & {"FAILED", "CANCELLED"}:
        raise typer.Exit(EXIT_FAILED)


async def _emit_here(
    db: str | None,
    event_type: str,
    payload: dict[str, Any],
    event_id: str | None,
    definitions: list[Path],
) -> dict[str, Any]:
    from orchestrion.api.routes.emitting import emit_response

    async with engine(db, resume=False, create=True) as local:
        for path in definitions:
            await local.submit(path)
        local.followers.watch()  # the followers of what it starts run here too
        emitted = await local.emit(event_type, payload, event_id)
        ended = []
        for started in emitted.executions:
            result = await local.settle(started.execution_id)
            ended.append(replace(started, status=result.status))
        emitted.executions = ended
        body = emit_response(emitted).model_dump(mode="json")
        # As `run` waits for its execution: the whole chain of followers is done (or waits
        # for a person) before the engine stops, so nothing it owes is left behind.
        chain = await local.followers.settle_chains([e.execution_id for e in ended])
        body["followers"] = [
            {"execution_id": r.execution_id, "workflow": r.workflow, "version": r.version,
             "status": r.status.value.upper()}
            for r in chain
        ]  # fmt: skip
        return body


def _payload(data: str) -> dict[str, Any]:
    try:
        payload = json.loads(data)
    except json.JSONDecodeError as exc:
        fail(EXIT_INVALID, f"--data is not JSON: {exc}")
    if not isinstance(payload, dict):
        fail(EXIT_INVALID, f"--data must be a JSON object, got {type(payload).__name__}")
    return payload


def _print(body: dict[str, Any], as_json: bool) -> None:
    if as_json:
        console.print_json(json.dumps(body))
        return
    console.print(
        f"event {escape(body['event_id'])} ({escape(body['event_type'])}): "
        f"{escape(body['message'])}",
        highlight=False,
        soft_wrap=True,
    )
    for item in body["executions"]:
        console.print(
            f"  {escape(item['workflow'])} v{escape(item['version'])}  "
            f"{escape(item['execution_id'])}  {item['status']}",
            highlight=False,
            soft_wrap=True,
        )
    for item in body.get("followers", []):
        console.print(
            f"  then {escape(item['workflow'])} v{escape(item['version'])}  "
            f"{escape(item['execution_id'])}  {item['status']}",
            highlight=False,
            soft_wrap=True,
        )
    for item in body["skipped"]:
        console.print(
            f"  skipped {escape(item['workflow'])} ({item['reason']}): {escape(item['message'])}",
            highlight=False,
            soft_wrap=True,
        )
