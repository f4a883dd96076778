"""What a handler is, what it is given, and how handlers are found by name.

A handler is an async function ``run(ctx, config) -> output``. ``config`` is the node's config
after template rendering, validated into the handler's pydantic ``config_model``. The output
must be JSON-serialisable. A handler signals failure by raising: ``TransientNodeError`` for
what may pass on a retry, ``PermanentNodeError`` for what will not; any other exception counts
as transient unless the node's retry policy says otherwise. A handler that must wait for a
person or a time returns ``Wait(...)`` instead of an output.

Retries, timeouts, metrics, masking and auditing wrap the handler call in the runtime; handlers
do none of it themselves.

A handler that often has nothing to wait for (``noop``, ``condition``, ``input``) may also give
``run_now``, a plain function with the same arguments: it returns the output at once, or
``LATER`` to have ``run`` called instead. The embedded engine calls it inside its own turn,
before that turn's commit, which spares the attempt an asyncio task, two trips round the event
loop and a commit of its own: ``run_now`` must therefore have no effect outside the engine
(no I/O, no clock it waits on), since it may run before the attempt's start is durable.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from orchestrion.handlers.resources import Controls, Resources

__all__ = [
    "LATER",
    "Controls",
    "HandlerFunc",
    "HandlerSpec",
    "NodeContext",
    "NowFunc",
    "Resources",
    "Wait",
    "run_of",
]


_NODE_LOGGER = logging.getLogger("orchestrion.node")


@dataclass(slots=True)
class NodeContext:
    """Everything a handler may know about the attempt it runs."""

    execution_id: str
    node_id: str
    attempt: int
    idempotency_key: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]  # outputs of the node's dependencies and of the nodes it references
    dependencies: tuple[str, ...]
    handler: str
    resources: Resources
    deadline: float | None = None  # epoch seconds by which the attempt must end
    classification: str = "public"
    wait_result: Any = None  # set when a waiting node runs again after its wait ended
    map_items: int = 0  # in the context of a map's item: how many items the map runs
    logger: logging.Logger = _NODE_LOGGER


@dataclass(frozen=True, slots=True)
class Wait:
    """Returned by a handler to park the node (approval, timer) instead of completing it."""

    reason: str
    wake_at: float | None = None
    data: dict[str, Any] | None = None


HandlerFunc = Callable[[NodeContext, Any], Awaitable[Any]]
NowFunc = Callable[[NodeContext, Any], Any]


class _Later:
    """The type of ``LATER``: what ``run_now`` returns when the call has to wait after all."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "LATER"


LATER: Any = _Later()


def run_of(now: NowFunc) -> HandlerFunc:
    """``now`` as the ``run`` of a handler that never waits (``now`` never answers ``LATER``)."""

    async def run(ctx: NodeContext, config: Any) -> Any:
        return now(ctx, config)

    run.__name__ = run.__qualname__ = f"run_of_{now.__name__}"
    return run


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """A registered handler: its canonical name, aliases, config schema and function(s).

    ``run_now``, when given, must have no effect outside the engine, and must do nothing
    before it returns ``LATER``: the attempt then starts afresh with ``run``.
    """

    name: str
    run: HandlerFunc
    config_model: type[BaseModel] | None = None
    aliases: tuple[str, ...] = ()
    description: str = ""
    # Keys of config that are NOT rendered as templates before the call (e.g. a condition
    # expression the handler evaluates itself).
    raw_keys: frozenset[str] = frozenset()
    run_now: NowFunc | None = None
    # When given, ``run_now`` is tried only for attempts whose raw config (templates not yet
    # rendered) it accepts: a cheap look that spares the others the render of a ``LATER``.
    runs_now: Callable[[Mapping[str, Any]], bool] | None = None
    # Keys of config that decide who may let a run through a human check, or whether the
    # check happens at all: the definition's author sets them, a start's overrides may not.
    fixed_keys: frozenset[str] = frozenset()
    # Whether the handler pauses its node for a time or a person (a ``Wait`` other than a
    # child execution's): such a handler cannot run per item of a ``map``.
    waits: bool = False
