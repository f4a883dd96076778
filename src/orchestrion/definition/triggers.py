"""Event triggers of a definition: what ``triggers:`` entries of type ``event`` mean, checked.

A definition's ``triggers`` list stays a list of mappings in the model (other trigger types
are read elsewhere); this module reads the ``event`` ones into ``EventTrigger`` and lists the
problems of every entry (unknown type, a missing ``event_type``, a ``filter`` or ``inputs``
template that does not parse) with the path of the field, which the loader turns into a line.

An event trigger::

    - type: event
      name: policy_update            # optional, for people
      event_type: policy.updated     # what POST /v1/events/{type} names
      filter: "payload.severity == 'high'"   # optional, the `when:` expression language
      inputs:                        # optional; without it the payload is the inputs
        document: "{{ payload.document }}"
    - type: event
      event_type: workflow.completed # or workflow.failed: fired when an execution of
      source: nightly-import         # the definition named here ends

A webhook trigger (``POST /v1/hooks/{workflow}/{name}``, signed with a shared secret)::

    - type: webhook
      name: on-push                  # required: the last segment of its URL
      secret: GITHUB                 # ORCHESTRION_WEBHOOK_SECRET_GITHUB holds the secret
      scheme: github                 # X-Hub-Signature-256; default: orchestrion (timestamped)
      filter: "payload.ref == 'refs/heads/main'"   # optional, as for events
      inputs: {ref: "{{ payload.ref }}"}           # optional, as for events
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrion.errors import DefinitionIssue
from orchestrion.templates.rendering import expression_source, template_info

__all__ = [
    "EVENT_TYPE_PATTERN",
    "HOOK_WORKFLOW",
    "TRIGGER_TYPES",
    "WEBHOOK_SCHEMES",
    "WORKFLOW_EVENTS",
    "EventTrigger",
    "WebhookTrigger",
    "event_triggers",
    "trigger_issues",
    "unenforced_triggers",
    "webhook_triggers",
]

TRIGGER_TYPES = frozenset({"event", "manual", "scheduled", "schedule", "webhook"})
"""Trigger types a definition may declare; only ``event`` is read here."""

WORKFLOW_EVENTS = frozenset({"workflow.completed", "workflow.failed"})
"""Event types the engine fires itself when an execution of a definition ends."""

EVENT_TYPE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
"""An event type: a dotted name such as ``policy.updated`` (also a URL path segment)."""

# scheduled ones: definition/schedules.py; a manual one is any start by hand
_ENFORCED = frozenset({"event", "scheduled", "manual", "webhook"})
_EVENT_KEYS = frozenset({"type", "name", "event_type", "filter", "inputs", "source", "description"})
_WEBHOOK_KEYS = frozenset({"type", "name", "secret", "scheme", "filter", "inputs", "description"})
WEBHOOK_SCHEMES = frozenset({"orchestrion", "github", "standard"})
"""How a webhook's requests are signed (``governance/webhook_signing.py``)."""
_HOOK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
HOOK_WORKFLOW = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,199}$")
"""The workflow names a webhook URL can carry (``POST /v1/hooks/{workflow}/{trigger}``)."""
_SECRET_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")

Path = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class EventTrigger:
    """One ``type: event`` trigger of a definition."""

    event_type: str
    name: str | None = None
    filter: str | None = None
    inputs: Mapping[str, Any] | None = None
    source: str | None = None
    index: int = 0  # its place in ``triggers``


@dataclass(frozen=True, slots=True)
class WebhookTrigger:
    """One ``type: webhook`` trigger of a definition."""

    name: str
    secret: str
    scheme: str = "orchestrion"
    filter: str | None = None
    inputs: Mapping[str, Any] | None = None
    index: int = 0

    def as_event_trigger(self) -> EventTrigger:
        """The same trigger as the event machinery reads it (type ``webhook``)."""
        return EventTrigger("webhook", self.name, self.filter, self.inputs, None, self.index)


def webhook_triggers(triggers: Iterable[Mapping[str, Any]]) -> list[WebhookTrigger]:
    """The well-formed webhook triggers among ``triggers`` (a checked definition's)."""
    found = []
    for index, raw in enumerate(triggers):
        if not isinstance(raw, Mapping) or raw.get("type") != "webhook":
            continue
        name, secret = raw.get("name"), raw.get("secret")
        if not isinstance(name, str) or not isinstance(secret, str):
            continue
        inputs = raw.get("inputs")
        scheme = raw.get("scheme")
        found.append(
            WebhookTrigger(
                name=name,
                secret=secret,
                scheme=scheme if isinstance(scheme, str) else "orchestrion",
                filter=_text(raw.get("filter")),
                inputs=inputs if isinstance(inputs, Mapping) else None,
                index=index,
            )
        )
    return found


def event_triggers(triggers: Iterable[Mapping[str, Any]]) -> list[EventTrigger]:
    """The well-formed event triggers among ``triggers`` (a checked definition's)."""
    found = []
    for index, raw in enumerate(triggers):
        if not isinstance(raw, Mapping) or raw.get("type") != "event":
            continue
        event_type = raw.get("event_type")
        if not isinstance(event_type, str):
            continue
        inputs = raw.get("inputs")
        found.append(
            EventTrigger(
                event_type=event_type,
                name=_text(raw.get("name")),
                filter=_text(raw.get("filter")),
                inputs=inputs if isinstance(inputs, Mapping) else None,
                source=_text(raw.get("source")),
                index=index,
            )
        )
    return found


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def trigger_issues(
    triggers: Iterable[Any], workflow_name: str | None = None
) -> list[tuple[DefinitionIssue, Path]]:
    """Every problem of ``triggers``, each with the path of its field in the canonical dict."""
    issues: list[tuple[DefinitionIssue, Path]] = []
    for index, raw in enumerate(triggers):
        at: Path = ("triggers", index)
        if not isinstance(raw, Mapping):
            issues.append((_issue(index, "a trigger must be a mapping", "invalid_trigger"), at))
            continue
        kind = raw.get("type")
        if kind not in TRIGGER_TYPES:
            known = ", ".join(sorted(TRIGGER_TYPES))
            message = f"unknown trigger type {kind!r} (known: {known})"
            if kind is None:
                message = f"missing required key 'type' (one of: {known})"
            issues.append((_issue(index, message, "unknown_trigger_type", "type"), (*at, "type")))
            continue
        if kind == "event":
            issues.extend(_event_issues(index, raw, workflow_name))
        elif kind == "webhook":
            issues.extend(_webhook_issues(index, raw))
            if workflow_name is not None and not HOOK_WORKFLOW.match(workflow_name):
                message = (
                    f"a webhook trigger's URL is /v1/hooks/<workflow name>/<trigger name>, and "
                    f"the name {workflow_name!r} cannot be one: it must be 1 to 200 letters, "
                    "digits and . _ - (first a letter or digit)"
                )
                issues.append((_issue(index, message, "unreachable_webhook"), at))
    seen: set[str] = set()
    for index, raw in enumerate(triggers):
        if isinstance(raw, Mapping) and raw.get("type") == "webhook":
            name = raw.get("name")
            if isinstance(name, str) and name in seen:
                message = f"two webhook triggers are named '{name}' (a name is its URL)"
                issues.append((_issue(index, message, "duplicate", "name"), ("triggers", index)))
            elif isinstance(name, str):
                seen.add(name)
    return issues


def _webhook_issues(index: int, raw: Mapping[str, Any]) -> list[tuple[DefinitionIssue, Path]]:
    at: Path = ("triggers", index)
    issues: list[tuple[DefinitionIssue, Path]] = []

    def add(message: str, key: str, code: str = "invalid_trigger") -> None:
        issues.append((_issue(index, message, code, key), (*at, key)))

    for key in raw:
        if key not in _WEBHOOK_KEYS:
            add(f"unknown key {key!r} in a webhook trigger", str(key), "unknown_key")
    name = raw.get("name")
    if name is None:
        add("a webhook trigger needs 'name' (the last segment of its URL)", "name", "missing")
    elif not isinstance(name, str) or not _HOOK_NAME.match(name):
        add("'name' must be 1 to 100 letters, digits and . _ - (first a letter or digit)", "name")
    secret = raw.get("secret")
    if secret is None:
        add(
            "a webhook trigger needs 'secret': the NAME of ORCHESTRION_WEBHOOK_SECRET_<NAME>",
            "secret",
            "missing",
        )
    elif not isinstance(secret, str) or not _SECRET_NAME.match(secret):
        add("'secret' must be a name of 1 to 64 letters, digits and _", "secret")
    scheme = raw.get("scheme")
    if scheme is not None and scheme not in WEBHOOK_SCHEMES:
        known = ", ".join(sorted(WEBHOOK_SCHEMES))
        add(f"unknown signature scheme {scheme!r} (known: {known})", "scheme")
    if "description" in raw and not isinstance(raw["description"], str):
        add("'description' must be a string", "description")
    # filter and inputs: the same rules as an event trigger's
    shared = {k: raw[k] for k in ("filter", "inputs") if k in raw}
    for issue, path in _event_issues(index, {"event_type": "webhook", **shared}, None):
        issues.append((issue, path))
    return issues


def _event_issues(
    index: int, raw: Mapping[str, Any], workflow_name: str | None
) -> list[tuple[DefinitionIssue, Path]]:
    at: Path = ("triggers", index)
    issues: list[tuple[DefinitionIssue, Path]] = []

    def add(message: str, key: str, code: str = "invalid_trigger") -> None:
        issues.append((_issue(index, message, code, key), (*at, key)))

    for key in raw:
        if key not in _EVENT_KEYS:
            add(f"unknown key {key!r} in an event trigger", str(key), "unknown_key")
    event_type = raw.get("event_type")
    if event_type is None:
        add("an event trigger needs 'event_type' (what it listens to)", "event_type", "missing")
    elif not isinstance(event_type, str) or not EVENT_TYPE_PATTERN.match(event_type):
        add(
            "'event_type' must be a name of letters, digits and . _ : - (at most 128)",
            "event_type",
        )
    for key in ("name", "source", "description"):
        if key in raw and not isinstance(raw[key], str):
            add(f"'{key}' must be a string", key)
    source = raw.get("source")
    if event_type in WORKFLOW_EVENTS:
        if not isinstance(source, str) or not source:
            add(f"a '{event_type}' trigger needs 'source': the workflow it follows", "source")
        elif workflow_name is not None and source == workflow_name:
            add("a workflow cannot be triggered by its own end (it would run forever)", "source")
    elif source is not None:
        add("'source' is only for workflow.completed and workflow.failed triggers", "source")
    condition = raw.get("filter")
    if condition is not None:
        if not isinstance(condition, str) or not condition.strip():
            add("'filter' must be an expression, such as \"payload.level == 'high'\"", "filter")
        else:
            info = template_info(expression_source(condition.strip()))
            if info.error is not None:
                add(f"'filter' does not parse: {info.error}", "filter", "template_syntax")
            elif unknown := _unknown_names(info.names):
                add(_names_message("filter", unknown), "filter", "unknown_reference")
    inputs = raw.get("inputs")
    if inputs is not None:
        if not isinstance(inputs, Mapping):
            add("'inputs' must map input names to values or templates", "inputs")
        else:
            for path, value in _strings(inputs, ("inputs",)):
                # Every string is rendered, however deep in lists and mappings it sits.
                where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)[1:]
                info = template_info(value)
                found: tuple[str, str] | None = None
                if info.error is not None:
                    found = (f"'{where}' does not parse: {info.error}", "template_syntax")
                elif unknown := _unknown_names(info.names):
                    found = (_names_message(where, unknown), "unknown_reference")
                if found is not None:
                    issues.append((_issue(index, found[0], found[1], where), (*at, *path)))
    return issues


def _strings(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    """Each string inside ``value`` (mappings and lists walked), with its path."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(item, (*path, str(key)))
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            yield from _strings(item, (*path, position))


_NAMES = frozenset({"payload", "event"})
"""What a trigger's templates see: the event's payload, and the event (id, type, payload)."""


def _unknown_names(names: Iterable[str]) -> list[str]:
    return sorted(set(names) - _NAMES)


def _names_message(where: str, unknown: list[str]) -> str:
    shown = ", ".join(f"'{name}'" for name in unknown)
    return f"'{where}' reads {shown}: a trigger's templates see only payload and event"


def _issue(index: int, message: str, code: str, key: str | None = None) -> DefinitionIssue:
    where = f"triggers[{index}]" + (f".{key}" if key else "")
    return DefinitionIssue(message, field=where, code=code)


def unenforced_triggers(triggers: Iterable[Any]) -> list[Any]:
    """The triggers the engine does not act on: those of type ``schedule`` (not ``scheduled``)."""
    return [t for t in triggers if not (isinstance(t, Mapping) and t.get("type") in _ENFORCED)]
