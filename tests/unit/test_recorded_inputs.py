"""What is kept of an attempt's rendered config: secrets as declared, scrubbed, capped; on
the Redis wire sealed like outputs; left out of the event API's data."""

from __future__ import annotations

import time
from typing import Any

from orchestrion.api.convert import event_out
from orchestrion.cluster.on_wire import open_event, seal_event
from orchestrion.cluster.wire import event_from_dict, event_to_dict
from orchestrion.core.events import NodeStarted
from orchestrion.core.rendered import INPUTS_KEY, public_data
from orchestrion.execution.rendered_inputs import MAX_RENDERED_BYTES, recorded_inputs
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.store.base import EventRecord

SECRET = "Tok3n-Sup3r-S3cret-42"


def test_an_empty_config_records_nothing() -> None:
    assert recorded_inputs({}, {}, None) is None
    assert recorded_inputs(None, None, None) is None


def test_rendered_values_are_kept_and_secret_templates_stay_as_declared() -> None:
    raw: dict[str, Any] = {
        "url": "http://h/{{ input.path }}",
        "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}", "X-N": "{{ input.n }}"},
        "json": ["{{ secrets['TOKEN'] | lower }}", "{{ input.n }}", 3],
        "body": "{{ input.obj }}",
    }
    rendered: dict[str, Any] = {
        "url": "http://h/a",
        "headers": {"Authorization": f"Bearer {SECRET}", "X-N": 7},
        "json": [SECRET.lower(), 7, 3],
        "body": {"k": [1, 2]},
    }
    kept = recorded_inputs(raw, rendered, None)
    assert kept == {
        "url": "http://h/a",
        "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}", "X-N": 7},
        "json": ["{{ secrets['TOKEN'] | lower }}", 7, 3],
        "body": {"k": [1, 2]},
    }


def test_a_node_that_starts_children_keeps_a_marker() -> None:
    for handler in ("workflow", "map"):
        kept = recorded_inputs({"inputs": "{{ input.x }}"}, {"inputs": "pii"}, None, handler)
        assert kept is not None and set(kept) == {"omitted"} and "pii" not in str(kept)


def test_a_secret_that_came_another_way_is_scrubbed() -> None:
    # An upstream output carried the value (not from a secrets template): the backstop.
    kept = recorded_inputs(
        {"text": "{{ outputs.a }}"}, {"text": f"x {SECRET} y"}, Scrubber([SECRET])
    )
    assert kept == {"text": "x *** y"}


def test_a_config_over_the_cap_is_replaced_by_a_marker() -> None:
    big = "x" * (MAX_RENDERED_BYTES + 1)
    kept = recorded_inputs({"text": "{{ input.big }}"}, {"text": big}, None)
    assert kept is not None and set(kept) == {"omitted"}
    assert f"{MAX_RENDERED_BYTES}-byte limit" in kept["omitted"]
    just = "y" * (MAX_RENDERED_BYTES - 20)
    assert recorded_inputs({"t": "{{ input.v }}"}, {"t": just}, None) == {"t": just}


def test_values_json_cannot_hold_become_text() -> None:
    kept = recorded_inputs({"at": "{{ now }}"}, {"at": {1, 2}}, None)
    assert kept == {"at": "{1, 2}"}
    loop: list[Any] = []
    loop.append(loop)
    circular = recorded_inputs({"x": "{{ y }}"}, {"x": loop}, None)
    assert circular == {"omitted": "the rendered config cannot be written as JSON"}


def test_the_kept_copy_does_not_change_with_the_handlers_config() -> None:
    rendered: dict[str, Any] = {"params": {"items": [1, 2]}}
    kept = recorded_inputs({"params": {"items": "{{ x }}"}}, rendered, None)
    rendered["params"]["items"].append(3)
    assert kept == {"params": {"items": [1, 2]}}


def test_inputs_cross_the_wire_and_are_sealed_for_classified_executions() -> None:
    event = NodeStarted("n", 2, time.time(), {"who": "Ada Lovelace"})
    assert event_from_dict(event_to_dict(event)) == event
    ring = KeyRing.from_env(f"k1:{KeyRing.generate_key()}")
    sealed = seal_event(ring, "e1", event)
    assert isinstance(sealed, NodeStarted) and "Ada Lovelace" not in repr(sealed.inputs)
    assert open_event(ring, "e1", event_from_dict(event_to_dict(sealed))) == event
    plain = NodeStarted("n", 1, 0.0)
    assert seal_event(ring, "e1", plain) is plain


def test_the_event_api_and_sinks_leave_rendered_inputs_out() -> None:
    data = {"state": "running", INPUTS_KEY: {"who": "Ada"}}
    assert public_data(data) == {"state": "running"}
    assert public_data({"state": "x"}) == {"state": "x"}
    assert public_data(None) is None
    record = EventRecord(1, "id", "e1", "node.started", 0.0, "n", 1, data=data)
    assert event_out(record).data == {"state": "RUNNING"}
