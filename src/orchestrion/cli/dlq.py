"""``orchestrion dlq``: the dead letters, locally or through a server.

    orchestrion dlq list [--limit N] [--after ID] [--workflow NAME] [--since TIME] [--json]
    orchestrion dlq show ID [--json]
    orchestrion dlq retry ID [--json]     # a node: its execution reruns from it
    orchestrion dlq drop ID [--json]      # a node: recorded as handled, listed no more

Two kinds are listed. Nodes that failed for good (kind ``node``, id ``<execution>.<node>``:
their last attempt failed and so did their execution) are read from the database (``--db``,
as for every command), in both modes. In scale-out mode, task messages parked in Redis (kind
``task``, id ``1712345678901-0``) come first, read from ``--redis URL`` or
``ORCHESTRION_REDIS_URL`` (key prefix ``--prefix`` or ``ORCHESTRION_REDIS_PREFIX``): a retry
sends the same attempt back to its task stream, a drop fails it (``dead_letter``) and its
execution goes on. With ``--server URL`` and an admin ``--api-key`` everything goes through
``/v1/admin/dlq`` instead. Both ways print the same: a table (list), the fields, traceback and
task (show), one line (retry, drop), or with ``--json`` the client's shape
(``orchestrion.client.DeadLetter``, epoch times).

Exit codes (as in ``cli/app.py``): 0 done; 1 a node's rerun failed again or was cancelled
(here, or on the server, whose run a retry with ``--server`` follows to its end); 4 the rerun
waits for a person (an approval after the node: the commands that decide are on stderr); 2 a
letter that cannot be retried, no Redis configured for a task id, or a request the server
refused; 3 the database, Redis or the server cannot be reached; 5 an id that names no dead
letter (unknown, malformed, or a node that has not failed for good); 6 the server refused the
API key.

As everywhere an execution id is taken, the execution part of a node's id may be its first or
last characters (``5c38.flaky``): they must name one execution (else exit 2, the candidates
listed), locally or on ``--server``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, TypeVar

import typer
from rich.markup import escape

from orchestrion.cli.dlq_local import (
    NODE_CURSOR,
    Target,
    fail,
    is_node,
    local_page,
    node_drop,
    node_retry,
    node_show,
    on_redis,
    on_store,
    required_redis,
    task_drop,
    task_retry,
    task_show,
)
from orchestrion.cli.dlq_render import print_json, render_letter, render_page
from orchestrion.cli.exits import EXIT_NOT_FOUND
from orchestrion.cli.options import ApiKeyOption, DbOption, JsonOption, ServerOption, instant
from orchestrion.cli.terminal import console

if TYPE_CHECKING:
    from orchestrion.client import Client, DeadLetterAction
    from orchestrion.cluster.dlq import DeadLetters
    from orchestrion.engine.facade import Engine

__all__ = ["dlq_app"]

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters: list, show, retry or drop nodes that failed for good (and, in "
    "scale-out mode, parked task messages).",
    no_args_is_help=True,
)

RedisOption = Annotated[
    str | None,
    typer.Option("--redis", help="Redis URL (default: $ORCHESTRION_REDIS_URL)."),
]
PrefixOption = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help="Redis key prefix (default: $ORCHESTRION_REDIS_PREFIX, else orchestrion).",
    ),
]
EntryArgument = Annotated[
    str,
    typer.Argument(
        help="Dead letter id, as listed (<execution>.<node>, or 1712345678901-0); the "
        "execution part may be the first or last characters of its id."
    ),
]

_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")


def _checked(entry_id: str, *, cursor: bool = False) -> str:
    # Redis answers a malformed id with an error, which would read as "Redis failed" (exit 3).
    known = NODE_CURSOR.match(entry_id) if cursor else is_node(entry_id)
    if _ENTRY_ID.match(entry_id) or known:
        return entry_id
    fail(
        EXIT_NOT_FOUND,
        f"no dead letter '{entry_id}' (ids look like <execution id>.<node id>, or "
        "1712345678901-0 for a parked task)",
    )


def _whole(entry_id: str, target: Target) -> str:
    """``entry_id`` with its execution part made whole when it is a node's id."""
    if not is_node(entry_id):
        return entry_id
    from orchestrion.cli.ids import resolve

    # Neither an execution id nor a node id holds a dot: the first one ends the execution's.
    execution, _, node = entry_id.partition(".")
    whole = resolve(execution, db=target.db, server=target.server, api_key=target.api_key)
    return f"{whole}.{node}"


def _on_letter(
    entry_id: str,
    target: Target,
    remote: Callable[[Client, str], T],
    direct: Callable[[DeadLetters, str], Awaitable[T]],
    nodes: Callable[[Engine, str], Awaitable[T]],
) -> tuple[str, T]:
    """``entry_id`` checked and made whole, and what ``remote(client, id)`` answers with
    ``--server``, else ``nodes(engine, id)`` on the database for a node's id, else
    ``direct(dead_letters, id)`` on Redis."""
    _checked(entry_id)
    entry_id = _whole(entry_id, target)
    if target.server:
        from orchestrion.cli.remote import connected

        with connected(target.server, target.api_key) as client:
            return entry_id, remote(client, entry_id)
    if is_node(entry_id):
        return entry_id, on_store(target, lambda engine: nodes(engine, entry_id))
    return entry_id, on_redis(*required_redis(target), lambda dlq: direct(dlq, entry_id))


def _print_action(verb: str, entry_id: str, action: DeadLetterAction, as_json: bool) -> None:
    if as_json:
        print_json(action.to_dict())
    else:
        console.print(
            f"{verb} {escape(entry_id)}: {escape(action.message)}", highlight=False, soft_wrap=True
        )


# ---------------------------------------------------------------------------- commands


@dlq_app.command(name="list")
def list_(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, max=500)] = 50,
    after: Annotated[
        str | None, typer.Option("--after", help="Continue a listing (its 'more:' hint).")
    ] = None,
    workflow: Annotated[
        str | None,
        typer.Option("--workflow", help="Only nodes of this workflow (no parked tasks)."),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Only nodes that failed at or after it: epoch seconds or ISO 8601, UTC when "
            "without an offset (no parked tasks).",
        ),
    ] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
    redis: RedisOption = None,
    prefix: PrefixOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """List dead letters: parked tasks (scale-out) oldest first, then failed nodes."""
    if after is not None:
        _checked(after, cursor=True)
    since_epoch = instant(since, "--since")
    target = Target(redis, prefix, server, api_key, db)
    if target.server:
        from orchestrion.cli.remote import connected

        with connected(target.server, target.api_key) as client:
            page = client.list_dead_letters(limit, after, workflow=workflow, since=since_epoch)
    else:
        page = local_page(target, limit, after, workflow, since_epoch)
    if as_json:
        print_json(page.to_dict())
    else:
        render_page(page)


@dlq_app.command()
def show(
    entry_id: EntryArgument,
    as_json: JsonOption = False,
    db: DbOption = None,
    redis: RedisOption = None,
    prefix: PrefixOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Show a dead letter: its error (and, for a parked task, its traceback and message)."""
    target = Target(redis, prefix, server, api_key, db)
    _, letter = _on_letter(
        entry_id, target, lambda client, i: client.get_dead_letter(i), task_show, node_show
    )
    if as_json:
        print_json(letter.to_dict())
    else:
        render_letter(letter)


@dlq_app.command()
def retry(
    entry_id: EntryArgument,
    as_json: JsonOption = False,
    db: DbOption = None,
    redis: RedisOption = None,
    prefix: PrefixOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Retry a dead letter: a node's execution reruns from it (here, to its end, unless
    --server); a parked task goes back to its task stream."""
    target = Target(redis, prefix, server, api_key, db)
    decisions: list[tuple[str, str]] = []  # the nodes a rerun that waits waits on
    entry_id, action = _on_letter(
        entry_id,
        target,
        lambda client, i: _retried_on_server(client, i, decisions),
        task_retry,
        lambda engine, i: node_retry(engine, i, decisions),
    )
    _print_action("retried", entry_id, action, as_json)
    if is_node(entry_id):
        _rerun_exit(action, decisions, target)


def _rerun_exit(action: DeadLetterAction, decisions: list[tuple[str, str]], target: Target) -> None:
    """End as ``orchestrion retry`` does on the rerun's state (the message's last word): 1
    failed or cancelled, 4 waiting for a person, with the commands that decide."""
    from orchestrion.cli.exits import EXIT_FAILED, EXIT_WAITING
    from orchestrion.cli.handover import print_decisions
    from orchestrion.cli.terminal import err
    from orchestrion.core.states import ExecutionStatus

    state = action.message.rpartition(": ")[2]
    if state in (ExecutionStatus.FAILED, ExecutionStatus.CANCELLED):
        raise typer.Exit(EXIT_FAILED)
    if state == ExecutionStatus.WAITING:
        where = f" --server {target.server}" if target.server else ""
        where = where or (f" --db {target.db}" if target.db else "")
        print_decisions(err, decisions, where)
        raise typer.Exit(EXIT_WAITING)


def _retried_on_server(
    client: Client, entry_id: str, decisions: list[tuple[str, str]]
) -> DeadLetterAction:
    """The server's retry of ``entry_id``; a node's execution is then followed, as a local
    retry runs it, until it ends or waits for a person, and its state ends the message."""
    from dataclasses import replace

    from orchestrion.cli.remote import settle

    action = client.retry_dead_letter(entry_id)
    if not is_node(entry_id) or action.execution_id is None:
        return action
    result, waits = settle(client, action.execution_id)
    decisions.extend(waits)
    return replace(action, message=f"{action.message.rstrip('.')}: {result.status.value}")


@dlq_app.command()
def drop(
    entry_id: EntryArgument,
    as_json: JsonOption = False,
    db: DbOption = None,
    redis: RedisOption = None,
    prefix: PrefixOption = None,
    server: ServerOption = None,
    api_key: ApiKeyOption = None,
) -> None:
    """Drop a dead letter: a node is recorded as handled; a parked task's attempt fails
    (dead_letter) and its execution goes on."""
    target = Target(redis, prefix, server, api_key, db)
    entry_id, action = _on_letter(
        entry_id, target, lambda client, i: client.drop_dead_letter(i), task_drop, node_drop
    )
    _print_action("dropped", entry_id, action, as_json)
