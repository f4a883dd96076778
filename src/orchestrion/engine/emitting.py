"""Events that start workflows: ``Engine.emit``, and the engine's own ``workflow.*`` events.

An event (a type, a JSON payload, an id) starts every active definition with an event trigger
for its type whose ``filter`` holds, with the payload (or the trigger's ``inputs`` rendered
from it) as inputs. Each start's idempotency key is derived from (event type, event id, workflow
name) (``core/idempotency.py``), so
an event delivered again starts nothing twice and answers with the executions it started the
first time; the event id becomes the correlation id of the executions it started.

When an execution completes or fails, the engine that drove it emits ``workflow.completed`` or
``workflow.failed`` for its definition, with the finished execution's id as the event id: a
finished execution starts each follower at most once, whichever process fires it. Chains
of such starts stop after ``MAX_CHAIN`` links (a workflow that follows one that follows it
would otherwise run forever).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrion import safe_data
from orchestrion.core.idempotency import event_key
from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus
from orchestrion.definition.triggers import (
    EVENT_TYPE_PATTERN,
    WORKFLOW_EVENTS,
    EventTrigger,
    WebhookTrigger,
    webhook_triggers,
)
from orchestrion.engine.subscriptions import Subscriber, Subscriptions
from orchestrion.errors import (
    DefinitionError,
    ExecutionError,
    ExecutionNotFound,
    IdempotencyConflict,
)
from orchestrion.execution import enforce
from orchestrion.governance.trust import Trust
from orchestrion.templates.rendering import evaluate_condition, render_value, template_limits
from orchestrion.templates.threads import off_loop

if TYPE_CHECKING:
    from orchestrion.core.events import Record
    from orchestrion.engine.parts import EngineParts
    from orchestrion.engine.starting import Starts
    from orchestrion.store.base import DefinitionRecord, ExecutionRecord

__all__ = [
    "EVENT_ID_PATTERN",
    "MAX_CHAIN",
    "MAX_CHAIN_WIDTH",
    "Emitted",
    "EventRefused",
    "EventSkip",
    "EventStart",
    "EventTriggers",
]

logger = logging.getLogger(__name__)

MAX_CHAIN = 16
"""Most workflow.completed/failed links one chain of executions may have."""

MAX_CHAIN_WIDTH = 256
"""Most executions one link of a chain may multiply into (see ``_follow``)."""
# Labels a follower carries, set by the engine only: its link's number in its chain (the
# execution the chain began with, started otherwise, has none: 0), and its share of the
# chain's width.
_DEPTH = "chain_depth"
_WIDTH = "chain_width"

EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")
"""An event id given by the sender: a UUID, a message id, ``order-42:created``."""
_STARTED = RecordType.EXECUTION_STARTED
_ENDINGS = {
    RecordType.EXECUTION_COMPLETED: "workflow.completed",
    RecordType.EXECUTION_FAILED: "workflow.failed",
}


class EventRefused(ExecutionError):
    """An event the engine does not take: a bad type, id or payload (says which)."""


@dataclass(frozen=True, slots=True)
class EventStart:
    """An execution an event started (or had started, when the event is delivered again)."""

    execution_id: str
    workflow: str
    version: str
    definition_id: str
    trigger: str | None
    status: ExecutionStatus
    new: bool = True  # False: started when the same event was delivered before


@dataclass(frozen=True, slots=True)
class EventSkip:
    """A subscribed workflow the event did not start, and why (``filter``, ``error``)."""

    workflow: str
    trigger: str | None
    reason: str
    message: str


@dataclass(slots=True)
class Emitted:
    """What one event did."""

    event_id: str
    event_type: str
    executions: list[EventStart] = field(default_factory=list)
    skipped: list[EventSkip] = field(default_factory=list)
    headers: dict[str, str] | None = None  # a webhook's: what its templates see as event.headers


class EventTriggers:
    """Starts the subscribers of events (see the module docstring)."""

    def __init__(self, parts: EngineParts, starts: Starts) -> None:
        self._parts = parts
        self._starts = starts
        self.subscriptions = Subscriptions(lambda: parts.engine.store)
        self._background: set[asyncio.Task[None]] = set()

    async def emit(
        self, event_type: str, payload: Mapping[str, Any] | None, event_id: str | None = None
    ) -> Emitted:
        """See ``Engine.emit``; the engine's own ``workflow.*`` types are refused here."""
        if event_type in WORKFLOW_EVENTS:
            raise EventRefused(f"'{event_type}' events are fired by the engine only")
        return await self._emit(event_type, _checked_payload(payload), event_id, None)

    async def _emit(
        self,
        event_type: str,
        payload: dict[str, Any],
        event_id: str | None,
        source: str | None,
        subscribers: list[Subscriber] | None = None,
        inputs_trust: Trust | None = None,
        labels: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Emitted:
        if not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(event_type):
            raise EventRefused(
                "an event type is a name of letters, digits and . _ : - (at most 128)"
            )
        if event_id is None:
            event_id = str(uuid.uuid4())
        elif not isinstance(event_id, str) or not EVENT_ID_PATTERN.match(event_id):
            raise EventRefused(
                "an event id is 1 to 128 letters, digits and . _ : @ / + = - (first a letter"
                " or digit)"
            )
        emitted = Emitted(event_id, event_type, headers=headers)
        if subscribers is None:
            subscribers = await self.subscriptions.of(event_type, source)
        if not subscribers:
            return emitted
        self._parts.engine.check_accepting()
        by_definition: dict[str, list[Subscriber]] = {}
        for subscriber in subscribers:
            by_definition.setdefault(subscriber.definition.id, []).append(subscriber)
        # Together: the starts of one event-loop tick share one commit (ExecutionCreator).
        groups = by_definition.values()
        outcomes = await asyncio.gather(
            *(self._start(group, payload, emitted, inputs_trust, labels) for group in groups)
        )
        for outcome in outcomes:
            if isinstance(outcome, EventStart):
                emitted.executions.append(outcome)
            else:
                emitted.skipped.append(outcome)
        return emitted

    async def _start(
        self,
        triggers: list[Subscriber],
        payload: dict[str, Any],
        out: Emitted,
        inputs_trust: Trust | None,
        labels: dict[str, Any] | None,
    ) -> EventStart | EventSkip:
        """Start one definition with its first trigger that takes the event (a definition
        starts once per event, however many of its triggers listen to it)."""
        definition = triggers[0].definition
        event: dict[str, Any] = {"id": out.event_id, "type": out.event_type, "payload": payload}
        if out.headers is not None:
            event["headers"] = out.headers
        skip: EventSkip | None = None
        for subscriber in triggers:
            name = subscriber.trigger.name
            try:
                inputs = await self._inputs(subscriber.trigger, event, payload)
            except Exception as exc:  # a filter or template that fails on this payload
                skip = skip or EventSkip(definition.name, name, "error", _message(exc))
                continue
            if inputs is not None:
                break
            message = "the trigger's filter is false for this event"
            skip = skip or EventSkip(definition.name, name, "filter", message)
        else:
            assert skip is not None  # every trigger was tried, and none took the event
            return skip
        key = event_key(out.event_type, out.event_id, definition.name)
        try:
            record, made = await self._starts.start_or_find(
                definition, inputs, key, None, out.event_id, None, inputs_trust, labels
            )
        except (DefinitionError, IdempotencyConflict) as exc:
            # Inputs the workflow refuses, a limit, the policy; or a key that is another's.
            return EventSkip(definition.name, name, "error", _message(exc))
        # Begun (or handed over to an orchestrator): the stored row may not say so yet.
        status = record.status
        if status is ExecutionStatus.PENDING:
            status = ExecutionStatus.RUNNING
        return EventStart(
            record.id,
            definition.name,
            definition.version,
            definition.id,
            name,
            status,
            new=made,  # made by this call, not found by its key
        )

    async def _inputs(
        self, trigger: EventTrigger, event: dict[str, Any], payload: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The inputs ``trigger`` gives its workflow, or None when its filter is false."""
        if trigger.filter is None and trigger.inputs is None:
            return dict(payload)
        limits = enforce.template_limits_of(self._parts.engine.governance)
        context = {"event": event, "payload": payload}

        def render() -> dict[str, Any] | None:
            with template_limits(limits):
                if trigger.filter is not None and not evaluate_condition(trigger.filter, context):
                    return None
                if trigger.inputs is None:
                    return dict(payload)
                rendered = render_value(dict(trigger.inputs), context)
                return rendered if isinstance(rendered, dict) else None

        # Off the event loop: a template may run up to the policy's time limit.
        return await off_loop(render)

    async def find_webhook(
        self, workflow: str, trigger: str
    ) -> tuple[DefinitionRecord, WebhookTrigger] | None:
        """The active version of ``workflow`` and its webhook trigger ``trigger``, or None."""
        try:
            definition = await self._parts.engine.store.find_definition(workflow)
        except ExecutionNotFound:
            return None
        raw = definition.spec.get("triggers")
        for found in webhook_triggers(raw if isinstance(raw, list) else []):
            if found.name == trigger:
                return definition, found
        return None

    async def webhook(
        self,
        definition: DefinitionRecord,
        trigger: WebhookTrigger,
        payload: Mapping[str, Any] | None,
        delivery_id: str,
        headers: dict[str, str],
    ) -> Emitted:
        """Start ``definition`` from its webhook ``trigger`` (the request verified already).
        The event id is ``<trigger>:<delivery id>``, so a delivery sent again starts nothing
        twice; ``headers`` are what the trigger's templates see as ``event.headers``."""
        event_id = f"{trigger.name}:{delivery_id}"
        if not EVENT_ID_PATTERN.match(event_id):
            digest = hashlib.sha256(f"{trigger.name}\x1f{delivery_id}".encode()).hexdigest()
            event_id = f"hook-{digest[:48]}"
        subscriber = Subscriber(definition, trigger.as_event_trigger())
        return await self._emit(
            "webhook", _checked_payload(payload), event_id, None, [subscriber], headers=headers
        )

    # ------------------------------------------------------------------ workflow.* events

    def on_records(self, execution_id: str, records: list[Record]) -> None:
        """Record listener: an execution that just completed or failed fires its event."""
        ending = next((_ENDINGS[r.type] for r in records if r.type in _ENDINGS), None)
        if ending is None:
            if records and records[0].type == _STARTED:
                # Read the list of followers now, so that the end finds it fresh.
                self._spawn(self.subscriptions.warm())
            return
        live = self._parts.loop.live.get(execution_id)
        if live is None:
            return
        spec = live.compiled.plan.spec
        if self.subscriptions.known_none(ending, spec.name):
            return
        record = live.record
        classified = any(n.data_classification.value != "public" for n in spec.dag.nodes)
        payload = {
            "execution_id": execution_id,
            "workflow": spec.name,
            "version": spec.version,
            "definition_id": record.definition_id,
            "status": ending.split(".", 1)[1],
            "correlation_id": record.correlation_id,
            # A classified result stays with its execution (sealed there): followers read it
            # through the API with the rights that takes.
            "result": None if classified else live.compiled.result_from(live.outputs),
            "error": _error_of(live.machine.error, classified),
        }
        self._spawn(self._follow(ending, payload, record))

    def _spawn(self, work: Coroutine[Any, Any, None] | None) -> None:
        if work is None:
            return
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _follow(self, ending: str, payload: dict[str, Any], record: ExecutionRecord) -> None:
        try:
            name = str(payload["workflow"])
            followers = await self.subscriptions.of(ending, name, fresh=False)
            if not followers:
                return
            depth = _label_of(record, _DEPTH, 0)
            if depth >= MAX_CHAIN:
                logger.warning(
                    "execution %s ends a chain of %d workflow triggers: its %s starts nothing",
                    record.id, MAX_CHAIN, ending,
                )  # fmt: skip
                return
            # Followers of followers multiply: A followed by B1 and B2, each followed by A,
            # doubles every two links. Each follower carries its share of the chain's width
            # (its parent's times the number of workflows the parent's end started), and no
            # level of one chain exceeds MAX_CHAIN_WIDTH executions, so a chain is at most
            # MAX_CHAIN * MAX_CHAIN_WIDTH executions however its workflows follow each other.
            width = _label_of(record, _WIDTH, 1) * len({f.definition.id for f in followers})
            if width > MAX_CHAIN_WIDTH:
                logger.warning(
                    "execution %s: its %s would start %d followers, making its chain wider than"
                    " %d executions: it starts none",
                    record.id, ending, len(followers), MAX_CHAIN_WIDTH,
                )  # fmt: skip
                return
            # A follower's inputs come from the execution that ended: no more trusted than it.
            trust = Trust.of(record.trust)
            labels = {_DEPTH: depth + 1, _WIDTH: width}
            emitted = await self._emit(ending, payload, record.id, name, followers, trust, labels)
        except ExecutionError as exc:  # the engine stops: what follows is not started
            logger.warning("%s of execution %s started nothing: %s", ending, record.id, exc)
            return
        except Exception:
            logger.exception("%s of execution %s started nothing", ending, record.id)
            return
        for skip in emitted.skipped:
            logger.warning(
                "%s of execution %s did not start '%s': %s",
                ending, record.id, skip.workflow, skip.message,
            )  # fmt: skip

    async def close(self) -> None:
        """Let the ends being followed finish starting their followers."""
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)


def _error_of(error: Any, classified: bool) -> Any:
    """The ended execution's error as followers get it: a classified workflow's message may
    quote a classified value (a node's input in a URL, say), so only what kind of failure it
    was and which nodes failed go on, as its result does not."""
    if not classified or not isinstance(error, Mapping):
        return error
    kept = {key: error[key] for key in ("category", "nodes") if key in error}
    return {**kept, "message": "withheld: the workflow has pii or phi nodes"}


def _label_of(record: ExecutionRecord, label: str, default: int) -> int:
    value = record.labels.get(label) if isinstance(record.labels, dict) else None
    return value if isinstance(value, int) and value >= default else default


def _checked_payload(payload: Mapping[str, Any] | None) -> dict[str, Any]:
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise EventRefused(f"an event payload is a JSON object, got {type(payload).__name__}")
    try:
        safe_data.check(dict(payload))
    except safe_data.UnsafeData as exc:
        raise EventRefused(f"event payload: {exc}") from exc
    return dict(payload)


def _message(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
