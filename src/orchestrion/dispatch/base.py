"""The dispatch interface: how the engine hands node attempts to workers and hears back.

``LocalDispatcher`` runs attempts as asyncio tasks in this process (embedded mode); a Redis
Streams dispatcher (scale-out) sends the same ``TaskMessage`` through a stream. Either way the
result comes back as a state-machine event passed to the ``on_event`` callback given to
``start``. An embedded dispatcher may also run an attempt inline (``run_inline``): the engine
then applies its events in the same turn, before that turn's commit.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from orchestrion.core.events import Event
from orchestrion.governance.trust import Trust

__all__ = ["Dispatcher", "EventSink", "TaskMessage"]

SCHEMA_VERSION = 1

EventSink = Callable[[str, Event], None]
"""Called with (execution_id, event) for every result a worker produces."""


@dataclass(slots=True)
class TaskMessage:
    """One node attempt, with everything a worker needs and nothing it must look up.

    ``config`` is the node's raw config (templates unrendered, trigger-time overrides merged);
    ``inputs`` and ``outputs`` are the template context: the execution's input params and the
    outputs of the nodes this node depends on or references. ``kind`` is ``run`` or
    ``compensate``. ``trust`` is the execution's (``governance/trust.py``): untrusted unless
    said otherwise, and the process running the attempt applies the stricter of it and its own.
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
    kind: str = "run"
    capabilities: tuple[str, ...] = ()
    priority: int = 0
    wait_result: Any = None
    correlation_id: str | None = None
    trust: Trust = Trust.UNTRUSTED
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


class Dispatcher(Protocol):
    """Moves task messages to workers and results back."""

    async def start(self, on_event: EventSink) -> None: ...

    async def dispatch(self, tasks: list[TaskMessage]) -> None:
        """Hand over the attempts; returns once they are accepted (not finished)."""

    async def cancel(self, execution_id: str, node_id: str, attempt: int) -> None:
        """Stop an attempt if it is still running (best effort)."""

    async def close(self, grace: float = 0.0) -> None:
        """Stop taking work; let in-flight attempts finish for up to ``grace`` seconds."""

    def in_flight(self) -> int:
        """Attempts accepted and not yet finished."""

    def can_run_inline(self, handler: str) -> bool:
        """Whether ``run_inline`` may run attempts of ``handler`` (a cheap lookup)."""

    def run_inline(self, task: TaskMessage) -> list[Event] | None:
        """Run the attempt here and now, inside the engine's turn, if its handler has nothing
        to wait for and no effect outside the engine (``HandlerSpec.run_now``): its events
        (NodeStarted and the outcome), or None, having done nothing, when it declines."""
