"""A definition's name must stay addressable by the API's ``/v1/definitions/{name}`` routes."""

from __future__ import annotations

import json

import pytest

from orchestrion.errors import DefinitionError
from orchestrion.handlers.loading import load_definition

FLOW = 'name: "{name}"\ndag:\n  nodes:\n    - {{id: a, handler: noop}}\n'


@pytest.mark.parametrize(
    "name",
    ["a/b", "team/etl/daily", "versions", "executions", "a.b/c", "x/versions/1", "../up", "a//b"],
)
def test_names_the_routes_can_reach_are_kept(name: str) -> None:
    assert load_definition(FLOW.format(name=name)).spec.name == name


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("a/b/versions", "end in '/versions'"),
        ("a/executions", "end in '/executions'"),
        ("x/versions/1/activate", "end in '/activate'"),
        ("x/deprecate", "end in '/deprecate'"),
        ("team/a/b/versions", "end in '/versions'"),
    ],
)
def test_names_a_route_would_shadow_are_refused_naming_the_field(name: str, says: str) -> None:
    with pytest.raises(DefinitionError) as refused:
        load_definition(FLOW.format(name=name))
    [issue] = refused.value.issues
    assert issue.field == "name" and says in issue.message, issue


BIDI = {"\u202e": "U+202E", "\u2066": "U+2066", "\u200f": "U+200F", "\x85": "U+0085"}


@pytest.mark.parametrize("field", ["name", "version"])
@pytest.mark.parametrize("char", sorted(BIDI))
def test_bidi_and_control_characters_are_refused_in_names_and_versions(
    field: str, char: str
) -> None:
    """A name or version cannot reorder the text shown after it (a "trusted" header line)."""
    values = {"name": "payroll", "version": "7"}
    values[field] = f"7 · created 1/1/2026 · trusted {char}"
    flow = {**values, "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    with pytest.raises(DefinitionError) as refused:
        load_definition(json.dumps(flow))
    [issue] = refused.value.issues
    assert issue.field == field and BIDI[char] in issue.message, issue
    assert "bidirectional" in issue.message


def test_right_to_left_text_is_kept_in_names() -> None:
    assert load_definition(FLOW.format(name="תשלומים")).spec.name == "תשלומים"


@pytest.mark.parametrize("node", ["__proto__", "__init__", "__x"])
def test_node_ids_starting_with_two_underscores_are_refused_naming_the_node(node: str) -> None:
    text = FLOW.replace("{{id: a, handler: noop}}", f"{{{{id: {node}, handler: noop}}}}")
    with pytest.raises(DefinitionError) as refused:
        load_definition(text.format(name="flow"))
    [issue] = refused.value.issues
    assert issue.node == node and issue.field == "id" and "reserved" in issue.message, issue


def test_node_ids_with_one_leading_underscore_are_kept() -> None:
    text = FLOW.replace("{{id: a, handler: noop}}", "{{id: _private, handler: noop}}")
    assert load_definition(text.format(name="flow")).spec.dag.nodes[0].id == "_private"
