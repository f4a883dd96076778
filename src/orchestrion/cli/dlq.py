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

Exit codes (as in ``cli/app.py``): 0 done; 1 a node rerun here failed again; 2 a letter that
cannot be retried, no Redis configured for a task id, or a request the server refused; 3 the
database, Redis or the server cannot be reached; 5 an id that names no dead letter (unknown,
malformed, or a node that has not failed for good); 6 the server refused the API key.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from orchestrion.cli.app import (
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_STORE,
    ApiKeyOption,
    DbOption,
    JsonOption,
    ServerOption,
    app,
    console,
    err,
)

if TYPE_CHECKING:
    from orchestrion.client import Client, DeadLetter, DeadLetterAction, DeadLetterPage
    from orchestrion.cluster.dlq import DeadLetter as ParkedLetter
    from orchestrion.cluster.dlq import DeadLetters
    from orchestrion.engine.dead_nodes import ExhaustedNode
    from orchestrion.engine.facade import Engine
    from orchestrion.settings import Settings

__all__ = ["dlq_app"]

T = TypeVar("T")

dlq_app = typer.Typer(
    name="dlq",
    help="Dead letters: list, show, retry or drop nodes that failed for good (and, in "
    "scale-out mode, parked task messages).",
    no_args_is_help=True,
)
app.add_typer(dlq_app)

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
    typer.Argument(help="Dead letter id, as listed (<execution>.<node>, or 1712345678901-0)."),
]

_TIMEOUT = 10.0  # seconds a command waits for Redis
_ENTRY_ID = re.compile(r"^\d{1,20}-\d{1,20}$")
_NODE_CURSOR = re.compile(r"^node-(\d{1,9})$")
_MESSAGE_PREVIEW = 80


def _fail(code: int, message: str) -> NoReturn:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@dataclass(frozen=True, slots=True)
class _Target:
    """Where the queue is: a server (``--server``), else Redis."""

    redis: str | None
    prefix: str | None
    server: str | None
    api_key: str | None
    db: str | None = None


def _settings(target: _Target) -> Settings:
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    overrides: dict[str, Any] = {}
    if target.redis is not None:
        overrides["redis_url"] = target.redis
    if target.prefix is not None:
        overrides["redis_prefix"] = target.prefix
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        _fail(EXIT_INVALID, str(exc))
    if not settings.redis_url:
        _fail(
            EXIT_INVALID,
            "no Redis to find parked tasks in: pass --redis redis://host:6379/0 (or set "
            "ORCHESTRION_REDIS_URL), or --server URL with an admin --api-key",
        )
    return settings


def _redis_of(target: _Target) -> tuple[str, str] | None:
    """The Redis URL and key prefix when Redis is configured, else None."""
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    overrides: dict[str, Any] = {}
    if target.redis is not None:
        overrides["redis_url"] = target.redis
    if target.prefix is not None:
        overrides["redis_prefix"] = target.prefix
    try:
        settings = load_settings(**overrides)
    except ConfigurationError as exc:
        _fail(EXIT_INVALID, str(exc))
    return (settings.redis_url, settings.redis_prefix) if settings.redis_url else None


def _instant(value: str | None, name: str) -> float | None:
    from orchestrion.instants import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        _fail(EXIT_INVALID, f"{name}: {exc}, got {value!r}")


def _is_node(entry_id: str) -> bool:
    from orchestrion.engine.dead_nodes import NODE_ENTRY

    return NODE_ENTRY.match(entry_id) is not None


def _checked(entry_id: str, *, cursor: bool = False) -> str:
    # Redis answers a malformed id with an error, which would read as "Redis failed" (exit 3).
    known = _NODE_CURSOR.match(entry_id) if cursor else _is_node(entry_id)
    if _ENTRY_ID.match(entry_id) or known:
        return entry_id
    _fail(
        EXIT_NOT_FOUND,
        f"no dead letter '{entry_id}' (ids look like <execution id>.<node id>, or "
        "1712345678901-0 for a parked task)",
    )


def _on_store(target: _Target, direct: Callable[[Engine], Awaitable[T]]) -> T:
    """``direct(engine)`` on the local database (``--db``), errors as clean exits."""
    from orchestrion.cli.app import _engine, _run_async

    async def go() -> T:
        async with _engine(target.db, resume=False) as engine:
            return await direct(engine)

    result: T = _run_async(go())
    return result


def _run(
    target: _Target,
    entry_id: str,
    remote: Callable[[Client], T],
    direct: Callable[[DeadLetters], Awaitable[T]],
    nodes: Callable[[Engine], Awaitable[T]],
) -> T:
    """``remote(client)`` with ``--server``, else ``nodes(engine)`` on the database for a
    node's id, else ``direct(dead_letters)`` on Redis."""
    if target.server:
        from orchestrion.cli.remote import connected

        with connected(target.server, target.api_key) as client:
            return remote(client)
    if _is_node(entry_id):
        return _on_store(target, nodes)
    settings = _settings(target)
    assert settings.redis_url is not None
    return _on_redis(settings.redis_url, settings.redis_prefix, direct)


def _on_redis(url: str, prefix: str, direct: Callable[[DeadLetters], Awaitable[T]]) -> T:
    try:
        from redis.exceptions import RedisError
    except ImportError:
        _fail(EXIT_STORE, "redis-py is not installed: pip install 'orchestrion[scaleout]'")

    from orchestrion.cluster.dispatcher import connect_redis
    from orchestrion.cluster.dlq import DeadLetters
    from orchestrion.cluster.streams import StreamNames
    from orchestrion.errors import ConfigurationError, ExecutionNotFound

    async def go() -> T:
        redis = connect_redis(url)
        try:
            async with asyncio.timeout(_TIMEOUT):
                return await direct(DeadLetters(redis, StreamNames(prefix)))
        finally:
            await redis.aclose()

    try:
        return asyncio.run(go())
    except ExecutionNotFound as exc:  # an unknown id
        _fail(EXIT_NOT_FOUND, str(exc))
    except ConfigurationError as exc:  # a bad URL
        _fail(EXIT_INVALID, str(exc))
    except _NotRetryable as exc:
        _fail(EXIT_INVALID, str(exc))
    except TimeoutError:
        _fail(EXIT_STORE, f"Redis did not answer within {_TIMEOUT:g} s")
    except (RedisError, OSError) as exc:
        _fail(EXIT_STORE, f"cannot use Redis: {exc}")


class _NotRetryable(Exception):
    """``DeadLetters.retry`` refused the letter (its payload is not a task message)."""


# ---------------------------------------------------------------------------- conversions


def _letter(parked: ParkedLetter, *, with_payload: bool) -> DeadLetter:
    """A parked letter as the client returns it, so both ways print the same."""
    from orchestrion.client import DeadLetter

    data = parked.to_dict(with_payload=with_payload)
    # The ids were copied from the parked message, which may be anything (an unreadable one).
    attempt = data.get("attempt")
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        data["attempt"] = None
    if not isinstance(data.get("first_sent_at"), int | float):
        data["first_sent_at"] = None
    return DeadLetter.from_api(data)


def _node_letter(node: ExhaustedNode) -> DeadLetter:
    """A dead-lettered node as the client returns it, so both ways print the same."""
    from orchestrion.client import DeadLetter

    return DeadLetter(
        id=node.id,
        kind="node",
        category=node.category,
        message=node.message,
        deliveries=0,
        parked_at=node.failed_at,
        stream="",
        execution_id=node.execution_id,
        node_id=node.node_id,
        attempt=node.attempt,
        workflow=node.workflow or None,
    )


def _local_page(
    target: _Target, limit: int, after: str | None, workflow: str | None, since: float | None
) -> DeadLetterPage:
    """Parked tasks from Redis (when configured, and no filter is given), then nodes."""
    from orchestrion.client import DeadLetterPage

    items: list[DeadLetter] = []
    total = 0
    node_cursor = _NODE_CURSOR.match(after) if after else None
    redis = _redis_of(target)
    if redis is not None and workflow is None and since is None:
        tasks = _on_redis(*redis, lambda dlq: _page(dlq, limit, None if node_cursor else after))
        total = tasks.total
        if node_cursor is None:
            if tasks.next_after:
                return tasks
            items = list(tasks.items)
    offset = int(node_cursor.group(1)) if node_cursor else 0

    async def nodes(engine: Engine) -> list[ExhaustedNode]:
        from orchestrion.engine.dead_nodes import ExhaustedNodes

        return await ExhaustedNodes(engine.store).list(workflow, since)

    found = _on_store(target, nodes)
    end = offset + limit - len(items)
    items += [_node_letter(node) for node in found[offset:end]]
    next_after = f"node-{end}" if len(found) > end else None
    return DeadLetterPage(items=items, next_after=next_after, total=total + len(found))


async def _node_show(engine: Engine, entry_id: str) -> DeadLetter:
    from orchestrion.engine.dead_nodes import ExhaustedNodes

    return _node_letter(await ExhaustedNodes(engine.store).get(entry_id))


async def _node_retry(engine: Engine, entry_id: str) -> DeadLetterAction:
    """Rerun the node's execution from it, here, until it ends or waits for a person."""
    from orchestrion.client import DeadLetterAction
    from orchestrion.engine.dead_nodes import ExhaustedNodes

    node = await ExhaustedNodes(engine.store).get(entry_id)
    await engine.retry(node.execution_id, from_node=node.node_id)
    result = await engine.settle(node.execution_id)
    return DeadLetterAction(
        id=entry_id,
        action="retried",
        stream="",
        execution_id=node.execution_id,
        node_id=node.node_id,
        attempt=node.attempt,
        message=f"execution {node.execution_id} re-run from node {node.node_id}: "
        f"{result.status.value}",
    )


async def _node_drop(engine: Engine, entry_id: str) -> DeadLetterAction:
    from orchestrion.client import DeadLetterAction
    from orchestrion.engine.dead_nodes import ExhaustedNodes

    node = await ExhaustedNodes(engine.store).drop(entry_id)
    return DeadLetterAction(
        id=entry_id,
        action="dropped",
        stream="",
        execution_id=node.execution_id,
        node_id=node.node_id,
        attempt=node.attempt,
        message=f"node {node.node_id} of execution {node.execution_id} is recorded as handled",
    )


async def _page(dlq: DeadLetters, limit: int, after: str | None) -> DeadLetterPage:
    from orchestrion.client import DeadLetterPage

    letters = await dlq.list(limit + 1, after)  # one more: is there a next page?
    total = await dlq.count()
    page = letters[:limit]
    return DeadLetterPage(
        items=[_letter(letter, with_payload=False) for letter in page],
        next_after=page[-1].id if len(letters) > limit else None,
        total=total,
    )


async def _show(dlq: DeadLetters, entry_id: str) -> DeadLetter:
    return _letter(await dlq.get(entry_id), with_payload=True)


async def _retry(dlq: DeadLetters, entry_id: str) -> DeadLetterAction:
    from orchestrion.client import DeadLetterAction

    letter = _letter(await dlq.get(entry_id), with_payload=False)
    try:
        added = await dlq.retry(entry_id)
    except ValueError as exc:
        raise _NotRetryable(f"{exc}: it cannot be retried, drop it instead") from None
    return DeadLetterAction(
        id=entry_id,
        action="retried",
        stream=letter.stream,
        stream_entry_id=added,
        execution_id=letter.execution_id,
        node_id=letter.node_id,
        attempt=letter.attempt,
        message=f"Dead letter sent back to {letter.stream} as {added}",
    )


async def _drop(dlq: DeadLetters, entry_id: str) -> DeadLetterAction:
    from orchestrion.client import DeadLetterAction

    letter = _letter(await dlq.drop(entry_id), with_payload=False)
    if letter.execution_id and letter.node_id and letter.attempt:
        message = (
            f"Dead letter dropped: attempt {letter.attempt} of node {letter.node_id} "
            "fails with category dead_letter"
        )
    else:
        message = "Dead letter dropped (it named no node attempt to fail)"
    return DeadLetterAction(
        id=entry_id,
        action="dropped",
        stream=letter.stream,
        execution_id=letter.execution_id,
        node_id=letter.node_id,
        attempt=letter.attempt,
        message=message,
    )


# ---------------------------------------------------------------------------- output


def _when(ts: float | None) -> str:
    from datetime import UTC, datetime

    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _preview(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MESSAGE_PREVIEW else line[: _MESSAGE_PREVIEW - 1] + "…"


def _print_json(data: Any) -> None:
    console.print_json(json.dumps(data, default=str))


def _render_page(page: DeadLetterPage) -> None:
    if not page.items:
        console.print("the dead letter queue is empty")
        return
    table = Table(
        title=f"dead letters: {len(page.items)} of {page.total}", title_justify="left", expand=True
    )
    # Ids are never cut (they are what the other commands take): a node's entry id holds its
    # execution and node, so those columns are shown only for parked tasks, which need them.
    tasks = any(letter.kind != "node" for letter in page.items)
    table.add_column("id", no_wrap=True, min_width=max(len(x.id) for x in page.items))
    table.add_column("kind", no_wrap=True)
    table.add_column("category", overflow="fold")
    if tasks:
        table.add_column("execution", no_wrap=True)
        table.add_column("node", overflow="fold")
    table.add_column("attempt", justify="right", no_wrap=True, min_width=7)
    if tasks:
        table.add_column("handler", overflow="fold")
        table.add_column("deliveries", justify="right")
    table.add_column("parked/failed at (UTC)", overflow="fold")
    table.add_column("message", overflow="ellipsis", no_wrap=True, ratio=1)
    for letter in page.items:
        cells: list[Any] = [
            Text(letter.id),
            Text(letter.kind),
            Text(letter.category, style="yellow" if letter.category == "delivery" else "red"),
        ]
        if tasks:
            cells += [Text(letter.execution_id or "-"), Text(letter.node_id or "-")]
        cells.append("-" if letter.attempt is None else str(letter.attempt))
        if tasks:
            cells += [Text(letter.handler or "-"), str(letter.deliveries)]
        cells += [_when(letter.parked_at), Text(_preview(letter.message))]
        table.add_row(*cells)
    console.print(table)
    if page.next_after:
        console.print(
            f"more: orchestrion dlq list --after {page.next_after}", highlight=False, soft_wrap=True
        )


def _render_letter(letter: DeadLetter) -> None:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    rows = [
        ("id", letter.id),
        ("kind", letter.kind),
        ("workflow", letter.workflow or "-"),
        ("category", letter.category),
        ("message", letter.message),
        ("execution", letter.execution_id or "-"),
        ("node", letter.node_id or "-"),
        ("attempt", "-" if letter.attempt is None else str(letter.attempt)),
        ("handler", letter.handler or "-"),
        ("stream", letter.stream),
        ("deliveries", str(letter.deliveries)),
        ("first sent at", _when(letter.first_sent_at)),
        ("parked at", _when(letter.parked_at)),
        ("consumer", letter.consumer or "-"),
    ]
    for name, value in rows:
        grid.add_row(name, Text(value))
    console.print(grid)
    if letter.traceback:
        console.print("\n[bold]traceback[/]")
        console.print(Text(letter.traceback))
    task = letter.task
    if task is not None:
        console.print("\n[bold]task[/]")
        _print_json(task)
    elif letter.payload:
        console.print("\n[bold]payload[/] (not a readable task message)")
        console.print(Text(letter.payload))


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
    since_epoch = _instant(since, "--since")
    target = _Target(redis, prefix, server, api_key, db)
    if target.server:
        from orchestrion.cli.remote import connected

        with connected(target.server, target.api_key) as client:
            page = client.list_dead_letters(limit, after, workflow=workflow, since=since_epoch)
    else:
        page = _local_page(target, limit, after, workflow, since_epoch)
    if as_json:
        _print_json(page.to_dict())
    else:
        _render_page(page)


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
    _checked(entry_id)
    target = _Target(redis, prefix, server, api_key, db)
    letter = _run(
        target,
        entry_id,
        lambda client: client.get_dead_letter(entry_id),
        lambda dlq: _show(dlq, entry_id),
        lambda engine: _node_show(engine, entry_id),
    )
    if as_json:
        _print_json(letter.to_dict())
    else:
        _render_letter(letter)


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
    _checked(entry_id)
    target = _Target(redis, prefix, server, api_key, db)
    action = _run(
        target,
        entry_id,
        lambda client: client.retry_dead_letter(entry_id),
        lambda dlq: _retry(dlq, entry_id),
        lambda engine: _node_retry(engine, entry_id),
    )
    if as_json:
        _print_json(action.to_dict())
    else:
        console.print(
            f"retried {escape(entry_id)}: {escape(action.message)}", highlight=False, soft_wrap=True
        )
    if not target.server and _is_node(entry_id) and action.message.endswith(": failed"):
        raise typer.Exit(1)


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
    _checked(entry_id)
    target = _Target(redis, prefix, server, api_key, db)
    action = _run(
        target,
        entry_id,
        lambda client: client.drop_dead_letter(entry_id),
        lambda dlq: _drop(dlq, entry_id),
        lambda engine: _node_drop(engine, entry_id),
    )
    if as_json:
        _print_json(action.to_dict())
    else:
        console.print(
            f"dropped {escape(entry_id)}: {escape(action.message)}", highlight=False, soft_wrap=True
        )
