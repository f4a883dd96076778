"""The verbs that change an execution: ``cancel``, ``pause``, ``retry``, ``resume``,
``approve`` and ``reject``, locally or on ``--server``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from orchestrion.cli.ids import resolve
from orchestrion.cli.local import engine, run_async
from orchestrion.cli.options import (
    ApiKeyOption,
    DbOption,
    ExecutionIdArgument,
    JsonOption,
    ServerOption,
)
from orchestrion.cli.outcome import Settled, exit_for, overall, report, settled
from orchestrion.cli.terminal import console

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["approve", "cancel", "compensating_note", "pause", "reject", "resume", "retry"]


def _verb_command(verb: str, doc: str, done: Callable[[str], str]) -> Callable[..., None]:
    """``pause`` or ``resume``: the engine's (or ``cli.remote``'s) method ``verb`` on one
    execution, then the line ``done`` makes of its full id; named and documented for typer
    as ``_decision_command`` below."""

    def command(
        execution_id: ExecutionIdArgument,
        db: DbOption = None,
        server: ServerOption = None,
        api_key: ApiKeyOption = None,
    ) -> None:
        _carry_out(verb, execution_id, db, server, api_key, done)

    command.__name__ = command.__qualname__ = verb
    command.__doc__ = doc
    return command


def _carry_out(
    verb: str,
    execution_id: str,
    db: str | None,
    server: str | None,
    api_key: str | None,
    done: Callable[[str], str],
    **args: Any,
) -> None:
    """The engine's (or ``cli.remote``'s) method ``verb`` with ``args`` on one execution,
    then the line ``done`` makes of its full id, or what a cancel recorded only says."""
    execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)

    async def go() -> str | None:
        async with engine(db, resume=False) as local:
            await getattr(local, verb)(execution_id, **args)
            record = await local.store.get_execution(execution_id)
            return compensating_note(verb, record.error)

    if server:
        from orchestrion.cli import remote

        note = getattr(remote, verb)(server, api_key, execution_id, **args)
    else:
        note = run_async(go())
    if note is not None:  # a cancel or pause that came while it compensated: recorded only
        console.print(note.format(id=escape(execution_id)), highlight=False, soft_wrap=True)
        return
    console.print(done(escape(execution_id)), highlight=False)


_COMPENSATING = {
    "cancel": (
        "cancel of {id} recorded, not carried out: it failed and is compensating (undoing the"
        " nodes that completed); the compensation runs to its end and it ends failed, its"
        " error naming the cancel (orchestrion status {id}); cancel --force abandons it"
    ),
    "pause": (
        "pause of {id} recorded, not carried out: it failed and is compensating (undoing the"
        " nodes that completed); a compensation is not paused: it runs to its end and it ends"
        " failed, its error naming the pause (orchestrion status {id}); cancel --force"
        " abandons it"
    ),
}


def compensating_note(verb: str, error: dict[str, Any] | None) -> str | None:
    """What a cancel or a pause answers when the execution was compensating: it was only
    recorded."""
    from orchestrion.core.control import cancel_request, pause_request

    recorded = {"cancel": cancel_request, "pause": pause_request}.get(verb)
    if recorded is None or recorded(error) is None:
        return None
    return _COMPENSATING[verb]


def cancel(
    execution_id: ExecutionIdArgument,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Also abandon a compensation under way, leaving the nodes not yet undone as"
            " they are (without it, a cancel that comes while the execution compensates is"
            " recorded and the compensation runs to its end).",
        ),
    ] = False,
    db: DbOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Cancel an execution: running nodes are stopped, nothing new starts."""
    args = {"force": True} if force else {}
    _carry_out(
        "cancel", execution_id, db, server, api_key, lambda shown: f"cancelled {shown}", **args
    )


pause = _verb_command(
    "pause",
    "Pause an execution: running nodes finish, nothing new starts until resume (a"
    " compensation is not paused: the pause is recorded).",
    lambda shown: f"paused {shown}; continue with: orchestrion resume {shown}",
)


def retry(
    execution_id: Annotated[str, typer.Argument(help="A failed or cancelled execution.")],
    from_node: Annotated[
        str | None,
        typer.Option("--from-node", help="Re-run this node and its downstream (any final run)."),
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Run a failed execution again from its failed nodes (completed nodes are kept)."""
    execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)

    async def go() -> Settled:
        async with engine(db, resume=False) as local:
            await local.retry(execution_id, from_node=from_node)
            return await settled(local, execution_id)

    decisions = None
    if server:
        from orchestrion.cli import remote

        result, decisions = remote.retry(server, api_key, execution_id, from_node)
    else:
        result, decisions = run_async(go())
    report(result, as_json)
    exit_for(result, db, decisions, server)


def resume(
    execution_id: Annotated[
        str | None, typer.Argument(help="A paused execution (default: every unfinished one).")
    ] = None,
    db: DbOption = None,
    as_json: JsonOption = False,
    quiet: Annotated[
        bool,
        typer.Option(
            "--quiet", "-q", help="No live progress (as run takes it; resume shows results only)."
        ),
    ] = False,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Continue unfinished executions (after a crash or kill) and paused ones, to the end."""
    del quiet  # resume shows no live progress: taken so that a script's `run -q` line works
    if execution_id is not None:
        execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)

    async def go() -> list[Settled]:
        local = engine(db)
        local.followers.watch()  # the followers it starts (owed ones too) run to their end
        async with local:
            ids = await _resumed(local, execution_id)
            found = [await settled(local, i) for i in ids]
            await local.followers.settle_chains([*ids, *local.followers.chain_roots()])
            return found

    if server:
        from orchestrion.cli import remote

        found = remote.resume(server, api_key, execution_id)
    else:
        found = run_async(go())
    results = [result for result, _ in found]
    decisions = [decision for _, waiting in found for decision in waiting]
    if not results:
        console.print("nothing to resume: no unfinished executions")
        return
    for result in results:
        report(result, as_json)
    exit_for(overall(results), db, decisions, server)


async def _resumed(local: Engine, execution_id: str | None) -> list[str]:
    """Resume ``execution_id`` (or every paused one): the ids to follow to their end, a
    child left out when its parent is shown."""
    from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus
    from orchestrion.errors import InvalidTransition

    if execution_id is not None:
        record = await local.store.get_execution(execution_id)
        if record.status is ExecutionStatus.PAUSED:
            await local.resume(execution_id)
        elif record.status not in FINAL_EXECUTION_STATES and not local.is_live(execution_id):
            raise InvalidTransition(
                f"execution {execution_id} is not paused (status "
                f"{record.status.value}) and another process is running it"
            )
        return [execution_id]
    records = await local.store.unfinished_executions()
    unfinished = {record.id for record in records}
    ids = []
    for record in records:
        if record.status is ExecutionStatus.PAUSED:
            await local.resume(record.id)
        if record.parent_execution_id not in unfinished:  # shown with its parent
            ids.append(record.id)
    return ids


DecidedBy = Annotated[str | None, typer.Option("--by", help="Who decides (recorded).")]
Comment = Annotated[str | None, typer.Option("--comment", "-m", help="Why (recorded).")]
WaitingNode = Annotated[str, typer.Argument(help="The node waiting for approval.")]


def _decision_command(name: str, approved: bool, doc: str) -> Callable[..., None]:
    """``approve`` or ``reject``: the same arguments, one decision; typer names the command
    after the function's ``__name__`` and takes its help from ``__doc__``."""

    def command(
        execution_id: ExecutionIdArgument,
        node: WaitingNode,
        by: DecidedBy = None,
        comment: Comment = None,
        db: DbOption = None,
        server: ServerOption = None,
        api_key: ApiKeyOption = None,
        as_json: JsonOption = False,
    ) -> None:
        execution_id = resolve(execution_id, db=db, server=server, api_key=api_key)
        if server:
            from orchestrion.cli import remote

            result, decisions = remote.decide(
                server, api_key, execution_id, node, approved=approved, by=by, comment=comment
            )
        else:

            async def go() -> Settled:
                async with engine(db, resume=False) as local:
                    # A child's decision completes the child: its parents, released by the
                    # run that handed over, are driven here to take that result and go on.
                    root = await local.adopt_lineage(execution_id)
                    await local.decide(
                        execution_id, node, approved=approved, by=by, comment=comment
                    )
                    return await settled(local, root)

            result, decisions = run_async(go())
        report(result, as_json)
        exit_for(result, db, decisions, server)

    command.__name__ = command.__qualname__ = name
    command.__doc__ = doc
    return command


approve = _decision_command(
    "approve",
    approved=True,
    doc="Approve a node waiting for approval; the execution then carries on (locally: here).",
)
reject = _decision_command(
    "reject",
    approved=False,
    doc="Reject a node waiting for approval (it fails, unless its on_reject is continue).",
)
