"""The dispatch interface: how the engine hands node attempts to workers and hears back.

``LocalDispatcher`` runs attempts as asyncio tasks in this process (embedded mode); a Redis
Streams dispatcher (scale-out) sends the same ``TaskMessage`` through a stream. Either way the
result comes back as a state-machine event passed to the ``on_event`` callback given to
``start``. An embedded dispatcher may also run an attempt inline (``run_inline``): the engine
then applies its events in the same turn, before that turn's commit.

A dispatcher shared by several engines (scale-out) is a ``ClusterDispatcher`` as well: the
engine binds it an ``EventRoute`` (where an event from the shared streams goes: this engine,
the execution's owner, or a takeover), listens through it to what other processes commit, and
forwards control events to the owner of an execution it does not drive. The engine asks
``cluster_of`` once, at start; nothing probes a dispatcher for optional methods.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from orchestrion.core.events import Event
from orchestrion.core.task_kinds import TaskKind
from orchestrion.governance.trust import Trust

__all__ = [
    "ClusterDispatcher",
    "Dispatcher",
    "EventRoute",
    "EventSink",
    "NotApplied",
    "Routed",
    "TaskMessage",
    "cluster_of",
]

SCHEMA_VERSION = 1

EventSink = Callable[[str, Event], None]
"""Called with (execution_id, event) for every result a worker produces."""


@dataclass(slots=True)
class TaskMessage:
    """One node attempt, with everything a worker needs and nothing it must look up.

    ``config`` is the node's raw config (templates unrendered, trigger-time overrides merged);
    ``inputs`` and ``outputs`` are the template context: the execution's input params and the
    outputs of the nodes this node depends on or references. ``kind`` is ``run`` or
    ``compensate``; a compensation carries its ``compensation_round`` (which compensation of
    the execution it belongs to, from 1), so a resumed one is told apart from a later one.
    ``trust`` is the execution's (``governance/trust.py``): untrusted unless said otherwise,
    and the process running the attempt applies the stricter of it and its own.
    """

    execution_id: str
    node_id: str
    attempt: int
    handler: str
    config: dict[str, Any]
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    dependencies: tuple[str, ...] = ()
    idempotency_key: str = ""
    timeout: float | None = None
    when: str | None = None
    classification: str = "public"
    kind: TaskKind = TaskKind.RUN  # off the wire, its plain string (which compares equal)
    capabilities: tuple[str, ...] = ()
    priority: int = 0
    wait_result: Any = None
    correlation_id: str | None = None
    trust: Trust = Trust.UNTRUSTED
    compensation_round: int = 0
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


class Dispatcher(Protocol):
    """Moves task messages to workers and results back."""

    async def start(self, on_event: EventSink) -> None: ...

    async def dispatch(self, tasks: list[TaskMessage]) -> None:
        """Hand over the attempts; returns once they are accepted (not finished)."""

    async def cancel(
        self, execution_id: str, node_id: str, attempt: int, kind: str = TaskKind.RUN
    ) -> None:
        """Stop an attempt (``kind``: or the node's compensation) if it is still running
        (best effort)."""

    async def close(self, grace: float = 0.0) -> None:
        """Stop taking work; let in-flight attempts finish for up to ``grace`` seconds."""

    def in_flight(self) -> int:
        """Attempts accepted and not yet finished."""

    def can_run_inline(self, handler: str, config: Mapping[str, Any]) -> bool:
        """Whether ``run_inline`` may run attempts of ``handler`` with the raw ``config`` (a
        cheap lookup)."""

    def run_inline(self, task: TaskMessage) -> list[Event] | None:
        """Run the attempt here and now, inside the engine's turn, if its handler has nothing
        to wait for and no effect outside the engine (``HandlerSpec.run_now``): its events
        (NodeStarted and the outcome), or None, having done nothing, when it declines."""


class Routed(Enum):
    """What became of a routed event (for acknowledgement and tests)."""

    HERE = "here"  # handed to this engine: acknowledge once its turn is committed
    FORWARDED = "forwarded"
    DROPPED = "dropped"
    RETRY_LATER = "retry_later"  # the store could not be read: leave the entry pending


class NotApplied(Exception):
    """What a delivered event's future raises when the machine it reached changed nothing
    with it: a duplicate, or a machine behind the store (its engine lost the execution to
    another and has not noticed yet). The reader asks ``EventRoute.settle_unapplied``."""


class EventRoute(Protocol):
    """What an engine offers a clustered dispatcher: where each event it reads must go."""

    @property
    def owner(self) -> str:
        """This engine's owner id (its inbox stream is named after it)."""

    def deliver_if_live(self, execution_id: str, event: Event) -> asyncio.Future[None] | None:
        """The fast path: a future for the commit when this engine drives the execution."""

    async def route(
        self, execution_id: str, event: Event
    ) -> tuple[Routed, asyncio.Future[None] | None]:
        """Hand the event to this engine, forward it to the owner, take the execution over,
        or drop it (late duplicate); the future resolves when this engine has committed it."""

    async def settle_unapplied(self, execution_id: str, event: Event) -> Routed:
        """An event this engine's machine changed nothing with (``NotApplied``): ``DROPPED``
        (a duplicate, or a request with nothing to do) or ``FORWARDED`` (to the execution's
        new owner) when its entry may be acknowledged, ``RETRY_LATER`` to leave it pending
        and route it again later."""

    async def refused(self, execution_id: str, event: Event) -> None:
        """An event dropped, or that changed nothing (``settle_unapplied`` said ``DROPPED``):
        journal it when it was a person's decision (``WaitResolved.decision``), refused."""

    def still_in_flight(self, tasks: list[TaskMessage]) -> list[TaskMessage]:
        """Those of ``tasks`` whose attempt has not ended in the journal."""

    async def redispatch(self) -> int:
        """Dispatch again what is in flight (the queue lost its data); how many."""

    async def redispatch_guarded(self) -> int:
        """``redispatch`` unless another call is under way; how many."""

    async def hand_over_again(self, older_than: float = 0.0) -> int:
        """Hand over again the starts nobody took for ``older_than`` seconds; how many."""


@runtime_checkable
class ClusterDispatcher(Dispatcher, Protocol):
    """What a dispatcher shared by several engines adds to ``Dispatcher``."""

    def bind_router(self, router: EventRoute) -> None:
        """Route the events read from the shared streams through ``router`` (before start)."""

    def record_listener(self, execution_id: str, records: list[Any]) -> None:
        """Engine listener: tell other processes what this engine committed."""

    async def forward(self, owner: str | None, execution_id: str, event: Event) -> None:
        """Send ``event`` to ``owner``'s inbox, or to the shared stream when None."""

    def reply_key(self) -> str:
        """A new key to forward a request with (``RetryRequested.reply``,
        ``WaitResolved.reply``) and wait on."""

    async def wait_reply(self, key: str, timeout: float) -> bool | None:
        """Whether the request forwarded with ``key`` was applied (True) or changed nothing
        (False); None when no orchestrator answered within ``timeout`` seconds."""

    async def hold_decision(
        self, execution_id: str, node_id: str, attempt: int, holder: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Hold a node's wait for one decision (``holder``: its ``reply`` key, ``verb`` and
        ``by``): None when held now, else the holder of the one already under way."""

    async def release_decision(
        self, execution_id: str, node_id: str, attempt: int, reply: str
    ) -> None:
        """Let the wait go if the decision answered on ``reply`` still holds it."""

    def live_owners(self) -> set[str] | None:
        """Engines whose heartbeat was seen lately; None when not known yet."""

    def owners_seen_at(self) -> float:
        """When the heartbeats behind ``live_owners`` were looked at (epoch seconds)."""


def cluster_of(dispatcher: Dispatcher) -> ClusterDispatcher | None:
    """``dispatcher`` as a clustered one, or None for a dispatcher of one process."""
    return dispatcher if isinstance(dispatcher, ClusterDispatcher) else None
