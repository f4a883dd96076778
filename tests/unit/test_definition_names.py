"""A definition's name must stay addressable by the API's ``/v1/definitions/{name}`` routes."""

from __future__ import annotations

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
