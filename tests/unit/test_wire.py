"""The scale-out wire format: every event and task message survives a round trip, and a message
from a newer writer is refused with a clear error instead of being guessed at."""

from __future__ import annotations

import json

import pytest

from orchestrion.cluster.streams import StreamNames, capability_sets
from orchestrion.cluster.wire import (
    WireError,
    decode_event,
    decode_task,
    encode_event,
    encode_task,
    loads,
)
from orchestrion.core import events as ev
from orchestrion.dispatch.base import SCHEMA_VERSION, TaskMessage

ERROR = ev.ErrorInfo("timeout", "node timed out after 1s", transient=True, type="TimeoutError")

EVENTS: list[ev.Event] = [
    ev.Started(1.5),
    ev.NodeStarted("a", 1, 2.0),
    ev.NodeSucceeded("a", 1, 2.5, {"rows": [1, 2], "nested": {"x": None}}),
    ev.NodeSucceeded("a", 2, 2.5, "text"),
    ev.NodeFailed("b", 3, 3.0, ERROR),
    ev.NodeSkipped("c", 1, 3.5, "condition_false"),
    ev.NodeWaiting("d", 1, 4.0, "approval", 99.0, {"prompt": "ok?"}),
    ev.WaitResolved("d", 1, 5.0, output={"approved": True}),
    ev.WaitResolved("d", 1, 5.0, error=ERROR),
    ev.TimerFired("e", 2, 6.0, "wake"),
    ev.CancelRequested(7.0, "by ada"),
    ev.PauseRequested(8.0),
    ev.ResumeRequested(9.0),
    ev.RetryRequested(10.0, "b"),
    ev.ExecutionTimedOut(11.0),
    ev.CompensationSucceeded("a", 12.0, {"undone": True}),
    ev.CompensationFailed("a", 13.0, ERROR),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: type(e).__name__)
def test_every_event_round_trips(event: ev.Event) -> None:
    raw = encode_event("exec-1", event)
    assert json.loads(raw)["v"] == SCHEMA_VERSION
    assert decode_event(loads(raw)) == ("exec-1", event)


def test_task_message_round_trips_with_its_envelope() -> None:
    task = TaskMessage(
        execution_id="e",
        node_id="n",
        attempt=2,
        handler="http",
        config={"url": "{{ input.u }}"},
        inputs={"u": "http://x"},
        outputs={"a": [1]},
        dependencies=("a",),
        idempotency_key="e:n:2",
        timeout=5.0,
        capabilities=("gpu",),
        wait_result={"woken": True, "wake_at": 3.0},
    )
    data = loads(encode_task(task, reply_to="p:inbox:o", deliveries=1))
    assert data["reply_to"] == "p:inbox:o"
    assert decode_task(data) == task


def test_unknown_fields_are_ignored_so_optional_additions_need_no_new_version() -> None:
    raw = json.loads(encode_event("e", ev.PauseRequested(1.0)))
    raw["event"]["added_later"] = 1
    raw["also_new"] = True
    assert decode_event(loads(json.dumps(raw))) == ("e", ev.PauseRequested(1.0))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "not a JSON object"),
        ('{"event": {}}', "no valid schema version"),
        (json.dumps({"v": SCHEMA_VERSION + 1}), "newer than this process reads"),
    ],
)
def test_unreadable_messages_are_refused_with_the_reason(raw: str, message: str) -> None:
    with pytest.raises(WireError, match=message):
        loads(raw)


def test_a_wrong_shape_names_what_is_missing() -> None:
    with pytest.raises(WireError, match="unknown event type 'Nope'"):
        decode_event({"v": 1, "execution_id": "e", "event": {"type": "Nope"}})
    with pytest.raises(WireError, match="NodeFailed is incomplete"):
        decode_event({"v": 1, "execution_id": "e", "event": {"type": "NodeFailed", "node": "a"}})
    with pytest.raises(WireError, match="no 'task' object"):
        decode_task({"v": 1})


def test_task_streams_route_by_handler_and_sorted_capabilities() -> None:
    names = StreamNames("p")
    assert names.tasks("http") == "p:tasks:http"
    assert names.tasks("llm", ["gpu", "eu"]) == "p:tasks:llm+eu+gpu"
    served = {names.tasks("llm", caps) for caps in capability_sets(["gpu", "eu"])}
    assert served == {"p:tasks:llm", "p:tasks:llm+eu", "p:tasks:llm+gpu", "p:tasks:llm+eu+gpu"}
