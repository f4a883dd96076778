"""``orchestrion dlq`` without ``--server``: dead letters read and acted on from here.

Nodes that failed for good come from the database (``--db``); parked tasks from Redis
(``--redis`` / ``ORCHESTRION_REDIS_URL``, through ``cluster/link.py``). Both are turned into
the client's models (``orchestrion.client.DeadLetter``...), so the output is the same as
through a server. Failures end the command with the exit codes of ``cli/dlq.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from orchestrion.cli.exits import EXIT_INVALID, EXIT_NOT_FOUND, EXIT_STORE
from orchestrion.cli.terminal import fail

if TYPE_CHECKING:
    from orchestrion.client import DeadLetter, DeadLetterAction, DeadLetterPage
    from orchestrion.cluster.dlq import DeadLetter as ParkedLetter
    from orchestrion.cluster.dlq import DeadLetters
    from orchestrion.engine.dead_nodes import ExhaustedNode
    from orchestrion.engine.facade import Engine

__all__ = [
    "NODE_CURSOR",
    "Target",
    "fail",
    "is_node",
    "local_page",
    "node_drop",
    "node_retry",
    "node_show",
    "on_redis",
    "on_store",
    "redis_of",
    "required_redis",
    "task_drop",
    "task_retry",
    "task_show",
]

T = TypeVar("T")

_TIMEOUT = 10.0  # seconds a command waits for Redis
NODE_CURSOR = re.compile(r"^node-(\d{1,9})$")


@dataclass(frozen=True, slots=True)
class Target:
    """Where the queue is: a server (``--server``), else Redis."""

    redis: str | None
    prefix: str | None
    server: str | None
    api_key: str | None
    db: str | None = None


def redis_of(target: Target) -> tuple[str, str] | None:
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
        fail(EXIT_INVALID, str(exc))
    return (settings.redis_url, settings.redis_prefix) if settings.redis_url else None


def required_redis(target: Target) -> tuple[str, str]:
    """The Redis URL and key prefix; ends the command when no Redis is configured."""
    found = redis_of(target)
    if found is None:
        fail(
            EXIT_INVALID,
            "no Redis to find parked tasks in: pass --redis redis://host:6379/0 (or set "
            "ORCHESTRION_REDIS_URL), or --server URL with an admin --api-key",
        )
    return found


def is_node(entry_id: str) -> bool:
    from orchestrion.engine.dead_nodes import NODE_ENTRY

    return NODE_ENTRY.match(entry_id) is not None


def on_store(target: Target, direct: Callable[[Engine], Awaitable[T]]) -> T:
    """``direct(engine)`` on the local database (``--db``), errors as clean exits."""
    from orchestrion.cli.local import engine as local_engine
    from orchestrion.cli.local import run_async

    async def go() -> T:
        async with local_engine(target.db, resume=False) as engine:
            return await direct(engine)

    result: T = run_async(go())
    return result


def on_redis(url: str, prefix: str, direct: Callable[[DeadLetters], Awaitable[T]]) -> T:
    """``direct(dead_letters)`` on the Redis at ``url``, errors as clean exits."""
    from orchestrion.cluster.connection import driver_installed
    from orchestrion.cluster.dlq_actions import NotRetryable
    from orchestrion.cluster.link import RedisLink
    from orchestrion.errors import ConfigurationError, DispatchError, ExecutionNotFound

    if not driver_installed():
        fail(EXIT_STORE, "redis-py is not installed: pip install 'orchestrion[scaleout]'")

    async def go() -> T:
        link = RedisLink(url, prefix)
        try:
            async with asyncio.timeout(_TIMEOUT):
                return await direct(link.dead_letters)
        finally:
            await link.aclose()

    try:
        return asyncio.run(go())
    except ExecutionNotFound as exc:  # an unknown id
        fail(EXIT_NOT_FOUND, str(exc))
    except ConfigurationError as exc:  # a bad URL
        fail(EXIT_INVALID, str(exc))
    except NotRetryable as exc:
        fail(EXIT_INVALID, str(exc))
    except TimeoutError:
        fail(EXIT_STORE, f"Redis did not answer within {_TIMEOUT:g} s")
    except DispatchError as exc:
        fail(EXIT_STORE, f"cannot use Redis: {exc}")


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


def local_page(
    target: Target, limit: int, after: str | None, workflow: str | None, since: float | None
) -> DeadLetterPage:
    """Parked tasks from Redis (when configured, and no filter is given), then nodes."""
    from orchestrion.client import DeadLetterPage

    items: list[DeadLetter] = []
    total = 0
    node_cursor = NODE_CURSOR.match(after) if after else None
    redis = redis_of(target)
    if redis is not None and workflow is None and since is None:
        tasks = on_redis(*redis, lambda dlq: _task_page(dlq, limit, None if node_cursor else after))
        total = tasks.total
        if node_cursor is None:
            if tasks.next_after:
                return tasks
            items = list(tasks.items)
    offset = int(node_cursor.group(1)) if node_cursor else 0

    async def nodes(engine: Engine) -> list[ExhaustedNode]:
        from orchestrion.engine.dead_nodes import ExhaustedNodes

        return await ExhaustedNodes(engine.store).list(workflow, since)

    found = on_store(target, nodes)
    end = offset + limit - len(items)
    items += [_node_letter(node) for node in found[offset:end]]
    next_after = f"node-{end}" if len(found) > end else None
    return DeadLetterPage(items=items, next_after=next_after, total=total + len(found))


async def node_show(engine: Engine, entry_id: str) -> DeadLetter:
    from orchestrion.engine.dead_nodes import ExhaustedNodes

    return _node_letter(await ExhaustedNodes(engine.store).get(entry_id))


async def node_retry(
    engine: Engine, entry_id: str, decisions: list[tuple[str, str]]
) -> DeadLetterAction:
    """Rerun the node's execution from it, here, until it ends or waits for a person (the
    (execution, node) pairs it waits on are added to ``decisions``)."""
    from orchestrion.cli.outcome import settled
    from orchestrion.client import DeadLetterAction
    from orchestrion.cluster.dlq_actions import LetterAction
    from orchestrion.engine.dead_nodes import ExhaustedNodes

    node = await ExhaustedNodes(engine.store).get(entry_id)
    await engine.retry(node.execution_id, from_node=node.node_id)
    result, waits = await settled(engine, node.execution_id)
    decisions.extend(waits)
    message = f"execution {node.execution_id} re-run from node {node.node_id}: "
    action = LetterAction.of_node(entry_id, "retried", node, message + result.status.value)
    return DeadLetterAction(**asdict(action))


async def node_drop(engine: Engine, entry_id: str) -> DeadLetterAction:
    from orchestrion.client import DeadLetterAction
    from orchestrion.cluster.dlq_actions import LetterAction
    from orchestrion.engine.dead_nodes import ExhaustedNodes

    node = await ExhaustedNodes(engine.store, engine.audit.signer).drop(entry_id)
    message = f"node {node.node_id} of execution {node.execution_id} is recorded as handled"
    return DeadLetterAction(**asdict(LetterAction.of_node(entry_id, "dropped", node, message)))


async def _task_page(dlq: DeadLetters, limit: int, after: str | None) -> DeadLetterPage:
    from orchestrion.client import DeadLetterPage

    letters = await dlq.list(limit + 1, after)  # one more: is there a next page?
    total = await dlq.count()
    page = letters[:limit]
    return DeadLetterPage(
        items=[_letter(letter, with_payload=False) for letter in page],
        next_after=page[-1].id if len(letters) > limit else None,
        total=total,
    )


async def task_show(dlq: DeadLetters, entry_id: str) -> DeadLetter:
    return _letter(await dlq.get(entry_id), with_payload=True)


async def task_retry(dlq: DeadLetters, entry_id: str) -> DeadLetterAction:
    from orchestrion.client import DeadLetterAction
    from orchestrion.cluster.dlq_actions import retry_letter

    return DeadLetterAction(**asdict(await retry_letter(dlq, entry_id)))


async def task_drop(dlq: DeadLetters, entry_id: str) -> DeadLetterAction:
    from orchestrion.client import DeadLetterAction
    from orchestrion.cluster.dlq_actions import drop_letter

    return DeadLetterAction(**asdict(await drop_letter(dlq, entry_id)))
