"""Encryption on the wire: classified task messages and outcomes sealed through Redis.

In scale-out mode the values encrypted at rest also cross Redis: a task message carries the
execution's inputs and the outputs its node reads, and a worker's answer carries the node's
output or error. Orchestrators and workers read the same key ring from the environment, so:

- ``seal_task`` (orchestrator, classified executions only, see ``at_rest``) moves ``config``,
  ``inputs`` and ``outputs`` into one envelope in ``extra["sealed"]`` bound to the attempt,
  and sets ``extra["seal_outcome"]``: the worker seals what it answers. ``wait_result`` stays: the
  engine writes it (a woken wait's reason and time, no data) and the dispatch guard of a woken
  attempt is told apart by it on both sides;
- ``open_task`` (worker) restores them, and raises ``ConfigurationError`` when the worker has
  no key ring (``Worker`` then fails the attempt with category ``configuration``: nothing is
  run, nothing leaks);
- ``seal_event`` / ``open_event`` do the same for the payload of an event: the output of a
  completion, a wait's data, the message and traceback of an error, the log lines of an
  attempt (all in one envelope, the only item of ``lines``), the rendered inputs of a start.
  Workers seal the outcome of every task marked so; orchestrators seal every payload they
  forward to another process (rare: control requests, events that reached the wrong
  orchestrator) and open what they read before routing it.

Tasks and outcomes of executions that are not classified go as they are.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from orchestrion.core import events as ev
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import ConfigurationError
from orchestrion.governance.encryption import (
    KeyRing,
    decrypt_value,
    encrypt_value,
    is_encrypted,
)
from orchestrion.store.encrypted import context

if TYPE_CHECKING:
    from orchestrion.governance.runtime import Governance, WireKeys
    from orchestrion.store.base import Store

__all__ = ["WireSealer", "open_event", "open_task", "seal_event", "seal_task", "seals_outcome"]

_SEALED_MESSAGE = "$enc:"
_SEALED_LINES = "$enc"
_OUTPUT_EVENTS = (ev.NodeSucceeded, ev.WaitResolved, ev.CompensationSucceeded)


def _task_context(task: TaskMessage) -> str:
    return context(task.execution_id, task.node_id, f"wire:task:{task.attempt}:{task.kind}")


def _event_context(execution_id: str, event: ev.Event, part: str) -> str:
    node = getattr(event, "node", None)
    attempt = getattr(event, "attempt", 0)
    return context(execution_id, node, f"wire:{type(event).__name__}:{attempt}:{part}")


def seal_task(ring: KeyRing, task: TaskMessage, *, outcome: bool) -> TaskMessage:
    """``task`` with its data in one envelope; ``outcome``: the worker must seal its answer."""
    payload = {"config": task.config, "inputs": task.inputs, "outputs": task.outputs}
    extra = {**task.extra, "sealed": encrypt_value(ring, payload, _task_context(task))}
    if outcome:
        extra["seal_outcome"] = True
    return replace(task, config={}, inputs={}, outputs={}, extra=extra)


def seals_outcome(task: TaskMessage) -> bool:
    return bool(task.extra.get("seal_outcome"))


def open_task(ring: KeyRing | None, task: TaskMessage) -> TaskMessage:
    """``task`` as it was before ``seal_task`` (unchanged when it was not sealed)."""
    sealed = task.extra.get("sealed")
    if sealed is None:
        return task
    if ring is None:
        raise ConfigurationError(
            f"node '{task.node_id}' of execution {task.execution_id} carries encrypted data"
            " and this worker has no encryption key: set ORCHESTRION_ENCRYPTION_KEYS to the"
            " orchestrators' key ring"
        )
    payload = decrypt_value(ring, sealed, _task_context(task))
    extra = {k: v for k, v in task.extra.items() if k != "sealed"}
    return replace(
        task,
        config=payload["config"],
        inputs=payload["inputs"],
        outputs=payload["outputs"],
        extra=extra,
    )


def seal_event(ring: KeyRing, execution_id: str, event: ev.Event) -> ev.Event:
    """``event`` with its payload (output, wait data, error text) sealed."""
    changes: dict[str, Any] = {}
    output = getattr(event, "output", None)
    if isinstance(event, _OUTPUT_EVENTS) and output is not None and not is_encrypted(output):
        ctx = _event_context(execution_id, event, "output")
        changes["output"] = encrypt_value(ring, output, ctx)
    if isinstance(event, ev.NodeWaiting) and event.data and not is_encrypted(event.data):
        changes["data"] = encrypt_value(
            ring, event.data, _event_context(execution_id, event, "data")
        )
    if isinstance(event, ev.NodeStarted) and event.inputs and not is_encrypted(event.inputs):
        changes["inputs"] = encrypt_value(
            ring, event.inputs, _event_context(execution_id, event, "inputs")
        )
    if isinstance(event, ev.NodeLogged) and event.lines and not _sealed_lines(event):
        envelope = encrypt_value(
            ring, list(event.lines), _event_context(execution_id, event, "lines")
        )
        changes["lines"] = ({_SEALED_LINES: envelope},)
    error = getattr(event, "error", None)
    if isinstance(error, ev.ErrorInfo) and not error.message.startswith(_SEALED_MESSAGE):
        hidden = {"message": error.message, "traceback": error.traceback}
        envelope = encrypt_value(ring, hidden, _event_context(execution_id, event, "error"))
        changes["error"] = ev.ErrorInfo(
            error.category,
            _SEALED_MESSAGE + json.dumps(envelope, separators=(",", ":")),
            error.transient,
            error.type,
        )
    return replace(event, **changes) if changes else event


def open_event(ring: KeyRing | None, execution_id: str, event: ev.Event) -> ev.Event:
    """``event`` as it was before ``seal_event`` (unchanged when nothing was sealed)."""
    changes: dict[str, Any] = {}
    if isinstance(event, _OUTPUT_EVENTS) and is_encrypted(event.output):
        changes["output"] = _decrypt(
            ring, event.output, _event_context(execution_id, event, "output")
        )
    if isinstance(event, ev.NodeWaiting) and event.data is not None and is_encrypted(event.data):
        changes["data"] = _decrypt(ring, event.data, _event_context(execution_id, event, "data"))
    if isinstance(event, ev.NodeStarted) and event.inputs and is_encrypted(event.inputs):
        changes["inputs"] = _decrypt(
            ring, event.inputs, _event_context(execution_id, event, "inputs")
        )
    if isinstance(event, ev.NodeLogged) and _sealed_lines(event):
        lines = _decrypt(
            ring, event.lines[0][_SEALED_LINES], _event_context(execution_id, event, "lines")
        )
        changes["lines"] = tuple(line for line in lines if isinstance(line, dict))
    error = getattr(event, "error", None)
    if isinstance(error, ev.ErrorInfo) and error.message.startswith(_SEALED_MESSAGE):
        envelope = json.loads(error.message[len(_SEALED_MESSAGE) :])
        hidden = _decrypt(ring, envelope, _event_context(execution_id, event, "error"))
        changes["error"] = ev.ErrorInfo(
            error.category, hidden["message"], error.transient, error.type, hidden["traceback"]
        )
    return replace(event, **changes) if changes else event


def _sealed_lines(event: ev.NodeLogged) -> bool:
    lines = event.lines
    return len(lines) == 1 and is_encrypted(lines[0].get(_SEALED_LINES))


def _decrypt(ring: KeyRing | None, value: dict[str, Any], ctx: str) -> Any:
    if ring is None:
        raise ConfigurationError(
            f"an event carries data encrypted with key {value.get('kid')!r} and this process"
            " has no encryption key: set ORCHESTRION_ENCRYPTION_KEYS"
        )
    return decrypt_value(ring, value, ctx)


class WireSealer:
    """The orchestrator's side: which tasks to seal (from the store's classification), and
    the events it reads and forwards. Built from the keys the policy in force exposes
    (``Governance.wire_keys``)."""

    def __init__(self, keys: WireKeys) -> None:
        self.ring = keys.ring
        self._classified = keys.classified

    @classmethod
    def of(cls, governance: Governance, store: Store) -> WireSealer | None:
        """The sealer of ``governance``'s keys over ``store``; None when nothing is sealed."""
        keys = governance.wire_keys(store)
        return cls(keys) if keys is not None else None

    def seal_task(self, task: TaskMessage) -> TaskMessage:
        if not self._classified(task.execution_id):
            return task
        # Every node of a classified execution can carry its data: every outcome is sealed.
        return seal_task(self.ring, task, outcome=True)

    def open_event(self, execution_id: str, event: ev.Event) -> ev.Event:
        return open_event(self.ring, execution_id, event)

    def seal_event(self, execution_id: str, event: ev.Event) -> ev.Event:
        return seal_event(self.ring, execution_id, event)
