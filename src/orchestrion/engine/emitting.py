"""Events that start workflows: ``Engine.emit``, and the engine's own ``workflow.*`` events.

An event (a type, a JSON payload, an id) starts every active definition with an event trigger
for its type whose ``filter`` holds, with the payload (or the trigger's ``inputs`` rendered
from it) as inputs. Each start's idempotency key is derived from (event type, event id, workflow
name) (``core/idempotency.py``), so
an event delivered again starts nothing twice and answers with the executions it started the
first time; the event id becomes the correlation id of the executions it started.

The engine's own ``workflow.completed`` and ``workflow.failed`` events, which start the
followers of an execution that ended, are ``engine/following.py``'s.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from orchestrion import safe_data
from orchestrion.core.idempotency import event_key
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
from orchestrion.store.base import ExecutionFilter
from orchestrion.templates.rendering import evaluate_condition, render_value, template_limits
from orchestrion.templates.threads import off_loop

if TYPE_CHECKING:
    from orchestrion.engine.parts import EngineParts
    from orchestrion.engine.starting import Starts
    from orchestrion.store.base import DefinitionRecord

__all__ = [
    "EVENT_ID_PATTERN",
    "Emitted",
    "EventConflict",
    "EventRefused",
    "EventSkip",
    "EventStart",
    "EventTriggers",
]

logger = logging.getLogger(__name__)

_EVENT_DIGEST = "event_digest"  # a label: the digest of the payload of the event that started it
EVENT_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@/+=-]{0,127}$")
"""An event id given by the sender: a UUID, a message id, ``order-42:created``."""


class EventRefused(ExecutionError):
    """An event the engine does not take: a bad type, id or payload (says which)."""


class EventConflict(IdempotencyConflict):
    """An event id sent again with another payload: a conflict, nothing is started."""


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

    async def emit(
        self, event_type: str, payload: Mapping[str, Any] | None, event_id: str | None = None
    ) -> Emitted:
        """See ``Engine.emit``; the engine's own ``workflow.*`` types are refused here."""
        if event_type in WORKFLOW_EVENTS:
            raise EventRefused(f"'{event_type}' events are fired by the engine only")
        checked = _checked_payload(payload)
        digest = _digest(checked)
        subscribers = await self.subscriptions.of(event_type, None)
        if event_id is not None and subscribers:
            await self._check_resent(event_type, event_id, digest, subscribers)
        labels = {_EVENT_DIGEST: digest}
        return await self.emit_own(event_type, checked, event_id, None, subscribers, labels=labels)

    async def _check_resent(
        self, event_type: str, event_id: str, digest: str, subscribers: list[Subscriber]
    ) -> None:
        """Refuse an event id sent before with another payload: nothing of it is started.
        (The same payload again finds what it started then.)"""
        if not isinstance(event_id, str) or not EVENT_ID_PATTERN.match(event_id):
            return  # refused by ``emit_own``, saying why
        keys: list[str] = sorted(
            {event_key(event_type, event_id, s.definition.name) for s in subscribers}
        )
        flt = ExecutionFilter(idempotency_keys=keys, limit=len(keys))
        found, _ = await self._parts.engine.store.list_executions(flt)
        for record in found:
            sent = record.labels.get(_EVENT_DIGEST) if isinstance(record.labels, dict) else None
            if sent is not None and sent != digest:
                raise EventConflict(
                    f"event id '{event_id}' was sent before with another payload (it started"
                    f" execution {record.id}): nothing was started; send a new event id, or"
                    " the same payload again"
                )

    async def emit_own(
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
        return await self.emit_own(
            "webhook", _checked_payload(payload), event_id, None, [subscriber], headers=headers
        )


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


def _digest(payload: dict[str, Any]) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def _message(exc: Exception) -> str:
    return str(exc) or type(exc).__name__
