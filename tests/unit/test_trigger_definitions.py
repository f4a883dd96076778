"""Event triggers in definitions: what is read, and malformed ones refused with their lines."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.definition.loader import LIFECYCLE_WARNING
from orchestrion.definition.triggers import event_triggers
from orchestrion.errors import DefinitionError
from orchestrion.handlers.loading import load_definition
from orchestrion.handlers.registry import default_registry

REGISTRY = default_registry()


def text(triggers: str) -> str:
    nodes = "dag:\n  nodes:\n    - id: a\n      handler: noop\n"
    return f"name: listener\ntriggers:\n{triggers}{nodes}"


def problems(source: str | dict[str, Any]) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source, registry=REGISTRY)
    return [(i.line, i.field, i.message) for i in caught.value.issues]


def test_a_well_formed_event_trigger_is_read_and_enforced_so_no_warning() -> None:
    loaded = load_definition(
        text(
            "  - type: event\n"
            "    name: policy_update\n"
            "    event_type: policy.updated\n"
            "    filter: \"payload.severity == 'high'\"\n"
            "    inputs:\n"
            "      document: '{{ payload.doc }}'\n"
        ),
        registry=REGISTRY,
    )
    assert loaded.warnings == []
    [trigger] = event_triggers(loaded.spec.triggers)
    assert trigger.event_type == "policy.updated" and trigger.name == "policy_update"
    assert trigger.filter == "payload.severity == 'high'"
    assert dict(trigger.inputs or {}) == {"document": "{{ payload.doc }}"}


def test_other_trigger_types_still_warn_that_they_are_not_enforced() -> None:
    loaded = load_definition(text("  - type: schedule\n"), registry=REGISTRY)
    assert loaded.warnings == [LIFECYCLE_WARNING]
    assert load_definition(text("  - type: manual\n"), registry=REGISTRY).warnings == []


def test_malformed_triggers_are_refused_with_line_and_field() -> None:
    found = problems(
        text(
            "  - type: event\n"  # line 3
            "    name: no type\n"
            "  - type: webhookz\n"  # line 5
            "  - type: event\n"
            "    event_type: a.b\n"
            "    filter: 'payload.x >'\n"  # line 8
            "  - type: event\n"
            "    event_type: c.d\n"
            "    inputs: {x: '{{ payload.x '}\n"  # line 11
            "  - type: event\n"
            "    event_type: 'has space'\n"  # line 13
            "    colour: red\n"  # line 14
        )
    )
    by_line = {line: message for line, _, message in found}
    assert by_line[3] == "an event trigger needs 'event_type' (what it listens to)"
    assert by_line[5].startswith("unknown trigger type 'webhookz'")
    assert by_line[8].startswith("'filter' does not parse")
    assert by_line[11].startswith("'inputs.x' does not parse")
    assert by_line[13].startswith("'event_type' must be a name")
    assert by_line[14] == "unknown key 'colour' in an event trigger"
    fields = {field for _, field, _ in found}
    expected = {"triggers[0].event_type", "triggers[1].type", "triggers[2].filter"}
    assert expected | {"triggers[4].colour"} <= fields


def test_workflow_events_need_a_source_other_than_the_workflow_itself() -> None:
    found = problems(
        text(
            "  - type: event\n"
            "    event_type: workflow.completed\n"
            "  - type: event\n"
            "    event_type: workflow.failed\n"
            "    source: listener\n"
            "  - type: event\n"
            "    event_type: order.placed\n"
            "    source: other\n"
        )
    )
    messages = [message for _, _, message in found]
    assert "a 'workflow.completed' trigger needs 'source': the workflow it follows" in messages
    assert "a workflow cannot be triggered by its own end (it would run forever)" in messages
    assert "'source' is only for workflow.completed and workflow.failed triggers" in messages


def test_reference_004_triggers_are_located_in_their_own_dialect() -> None:
    source = (
        "workflow:\n"
        "  id: dora\n"
        "  triggers:\n"
        "    - type: event\n"
        "      name: policy_update\n"
        "  tasks:\n"
        "    - id: a\n"
        "      agent: noop\n"
    )
    [(line, field, message)] = problems(source)
    assert line in (4, 5) and field is not None and field.startswith("workflow.triggers[0]")
    assert "event_type" in message


def test_trigger_templates_may_read_only_the_payload_and_the_event() -> None:
    found = problems(
        text(
            "  - type: event\n"
            "    event_type: a.b\n"
            "    filter: 'severity == 1'\n"  # line 5
            "    inputs:\n"
            "      doc: '{{ payload.doc }} {{ input.doc }}'\n"  # line 7
            "      id: '{{ event.id }}'\n"
        )
    )
    assert found == [
        (
            5,
            "triggers[0].filter",
            "'filter' reads 'severity': a trigger's templates see only payload and event",
        ),
        (
            7,
            "triggers[0].inputs.doc",
            "'inputs.doc' reads 'input': a trigger's templates see only payload and event",
        ),
    ]


@pytest.mark.parametrize(
    ("inputs", "field", "says"),
    [
        ("{cfg: {x: '{{ oops'}}", "triggers[0].inputs.cfg.x", "does not parse"),
        ("{cfg: ['{{ payload.a }}', '{{ secrets.T }}']}", "triggers[0].inputs.cfg[1]", "secrets"),
        ("{c: {deep: [{x: '{{ nodes.a.output }}'}]}}", "triggers[0].inputs.c.deep[0].x", "nodes"),
    ],
)
def test_templates_nested_in_trigger_inputs_are_checked_too(
    inputs: str, field: str, says: str
) -> None:
    [(line, where, message)] = problems(
        text(f"  - type: event\n    event_type: a.b\n    inputs: {inputs}\n")
    )
    assert (line, where) == (5, field) and says in message
    assert where.removeprefix("triggers[0].") in message


def test_nested_trigger_inputs_that_read_the_payload_load() -> None:
    inputs = "{cfg: {x: '{{ payload.a }}', list: ['{{ event.id }}', 3]}, n: 3}"
    load_definition(
        text(f"  - type: event\n    event_type: a.b\n    inputs: {inputs}\n"), registry=REGISTRY
    )


@pytest.mark.parametrize(
    ("name", "reachable"),
    [
        ("on-push", True),
        ("on_push.v2", True),
        ("a" * 200, True),
        ("My Flow", False),
        ("team/on-push", False),
        ("-leading", False),
        ("café", False),
    ],
)
def test_a_webhook_trigger_needs_a_name_its_url_can_carry(name: str, reachable: bool) -> None:
    flow = {
        "name": name,
        "triggers": [{"type": "webhook", "name": "gh", "secret": "GH", "scheme": "github"}],
        "dag": {"nodes": [{"id": "a", "handler": "noop"}]},
    }
    if reachable:
        assert load_definition(flow, registry=REGISTRY).spec.name == name
        return
    [(_, field, message)] = [p for p in problems(flow) if "/v1/hooks/" in p[2]]
    assert field == "triggers[0]" and repr(name) in message
