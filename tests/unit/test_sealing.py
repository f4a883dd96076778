"""Sealing of stored errors and journal data, and of task messages and events on the wire:
round trips, binding to the row or attempt, and the errors a reader without the key gets."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from orchestrion.cluster.on_wire import (
    open_event,
    open_task,
    seal_event,
    seal_task,
    seals_outcome,
)
from orchestrion.cluster.wire import decode_event, decode_task, encode_event, encode_task, loads
from orchestrion.core import events as ev
from orchestrion.dispatch.base import TaskMessage
from orchestrion.errors import ConfigurationError
from orchestrion.governance.encryption import DecryptionError, KeyRing, encrypt_value
from orchestrion.store.encrypted import (
    context,
    open_error,
    open_journal_data,
    seal_error,
)

RING = KeyRing.from_env(f"k1:{KeyRing.generate_key()}")
SECRET = "ada@example.com"


def task(**changes: Any) -> TaskMessage:
    base: dict[str, Any] = {
        "execution_id": "e1",
        "node_id": "card",
        "attempt": 2,
        "handler": "noop",
        "config": {"value": "{{ input.email }}"},
        "inputs": {"email": SECRET},
        "outputs": {"prev": {"email": SECRET}},
        "classification": "pii",
    }
    base.update(changes)
    return TaskMessage(**base)


def test_a_sealed_task_crosses_the_wire_without_its_data_and_opens_back() -> None:
    original = task(wait_result={"woken": True, "reason": "approval", "wake_at": 5.0})
    sealed = seal_task(RING, original, outcome=True)
    # The engine's wake marker stays readable: both sides key the dispatch guard on it.
    assert sealed.wait_result == original.wait_result
    text = encode_task(sealed, reply_to="inbox")
    assert SECRET not in text and "{{ input.email }}" not in text
    received = decode_task(loads(text))
    assert seals_outcome(received)
    opened = open_task(RING, received)
    assert opened.config == original.config
    assert opened.inputs == original.inputs
    assert opened.outputs == original.outputs
    assert opened.wait_result == original.wait_result
    assert "sealed" not in opened.extra


def test_a_sealed_task_is_bound_to_its_attempt() -> None:
    sealed = seal_task(RING, task(), outcome=False)
    assert not seals_outcome(sealed)
    moved = replace(sealed, attempt=3)
    with pytest.raises(DecryptionError, match="another row"):
        open_task(RING, moved)


def test_a_worker_without_the_key_is_told_what_to_set() -> None:
    with pytest.raises(ConfigurationError, match="ORCHESTRION_ENCRYPTION_KEYS") as caught:
        open_task(None, seal_task(RING, task(), outcome=True))
    assert "node 'card' of execution e1" in str(caught.value)
    plain = task(classification="public")
    assert open_task(None, plain) is plain  # nothing sealed: nothing needed


@pytest.mark.parametrize(
    "event",
    [
        ev.NodeSucceeded("card", 2, 1.0, output={"email": SECRET}),
        ev.WaitResolved("card", 2, 1.0, output={"comment": SECRET}),
        ev.CompensationSucceeded("card", 1.0, output=[SECRET]),
        ev.NodeWaiting("card", 2, 1.0, "approval", data={"message": SECRET}),
        ev.NodeFailed(
            "card", 2, 1.0, ev.ErrorInfo("error", f"KeyError: {SECRET}", True, "KeyError", SECRET)
        ),
        ev.CompensationFailed("card", 1.0, ev.ErrorInfo("permanent", SECRET)),
    ],
)
def test_event_payloads_are_sealed_on_the_wire(event: ev.Event) -> None:
    text = encode_event("e1", seal_event(RING, "e1", event))
    assert SECRET not in text
    execution_id, received = decode_event(loads(text))
    assert open_event(RING, execution_id, received) == event
    with pytest.raises(DecryptionError):
        open_event(RING, "e2", received)  # another execution's event: refused
    with pytest.raises(ConfigurationError, match="'k1'"):
        open_event(None, execution_id, received)


def test_events_without_payload_go_as_they_are() -> None:
    started = ev.NodeStarted("card", 1, 1.0)
    assert seal_event(RING, "e1", started) is started
    nothing = ev.NodeSucceeded("card", 1, 1.0, output=None)
    assert seal_event(RING, "e1", nothing) is nothing


def test_stored_errors_keep_their_category_and_hide_their_text() -> None:
    error = {"category": "error", "message": SECRET, "transient": True, "traceback": SECRET}
    ctx = context("e1", "card", "error")
    sealed = seal_error(RING, error, ctx)
    assert sealed["category"] == "error" and sealed["transient"] is True
    assert "traceback" not in sealed and SECRET not in str(sealed)
    assert seal_error(RING, sealed, ctx) is sealed  # sealing twice changes nothing
    assert open_error(RING, sealed, ctx) == error
    with pytest.raises(DecryptionError, match="another row"):
        open_error(RING, sealed, context("e1", "other", "error"))
    with pytest.raises(DecryptionError, match=r"'k1'.*ORCHESTRION_ENCRYPTION_KEYS"):
        open_error(None, sealed, ctx)


def test_journal_data_opens_its_error_and_sealed_parts() -> None:
    error = seal_error(RING, {"category": "x", "message": SECRET}, context("e1", "n", "error"))
    data = {"state": "waiting", "reason": "approval", "error": error}
    data["sealed"] = encrypt_value(RING, {"message": SECRET}, context("e1", "n", "data"))
    opened = open_journal_data(RING, data, "e1", "n")
    assert opened == {
        "state": "waiting",
        "reason": "approval",
        "error": {"category": "x", "message": SECRET},
        "message": SECRET,
    }
    plain = {"state": "completed"}
    assert open_journal_data(RING, plain, "e1", "n") is plain
