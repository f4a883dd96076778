"""Validation: every bad definition is rejected with the node, field, line and a clear message."""

from __future__ import annotations

import textwrap
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

from orchestrion.definition.limits import DefinitionLimits
from orchestrion.definition.model import WorkflowSpec
from orchestrion.definition.validate import check_spec, format_path, validate_spec
from orchestrion.errors import DefinitionError, DefinitionIssue
from orchestrion.handlers.base import HandlerSpec, NodeContext
from orchestrion.handlers.loading import load_definition
from orchestrion.handlers.registry import HandlerRegistry


async def _run(ctx: NodeContext, config: Any) -> Any:
    return None


class _Http(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str
    method: str = "GET"
    headers: dict[str, str] = {}
    json_body: Any = None
    timeout: float | None = None
    retries: int = 0


class _Python(BaseModel):
    model_config = ConfigDict(extra="forbid")
    function: str
    params: dict[str, Any] = {}


class _Choose(BaseModel):
    model_config = ConfigDict(extra="forbid")
    expression: str
    branches: dict[str, list[str]] = {}


def _registry() -> HandlerRegistry:
    return HandlerRegistry(
        [
            HandlerSpec("input", _run),
            HandlerSpec("output", _run),
            HandlerSpec("noop", _run),
            HandlerSpec("http", _run, _Http, aliases=("call_external_service",)),
            HandlerSpec("python", _run, _Python),
            HandlerSpec("choose", _run, _Choose, raw_keys=frozenset({"expression"})),
        ]
    )


REGISTRY = _registry()


def _errors(text: str) -> list[DefinitionIssue]:
    with pytest.raises(DefinitionError) as info:
        load_definition(textwrap.dedent(text).lstrip("\n"), registry=REGISTRY)
    return info.value.issues


def _one(issues: list[DefinitionIssue], fragment: str) -> DefinitionIssue:
    found = [issue for issue in issues if fragment in issue.message]
    assert found, f"no issue mentions {fragment!r}: {[str(i) for i in issues]}"
    return found[0]


HEADER = """\
name: wf
dag:
  nodes:
"""

# (case id, nodes YAML (indented under `nodes:`), message fragment, node, field, line)
BAD_NODES: list[tuple[str, str, str, str | None, str | None, int | None]] = [
    (
        "cycle",
        """
        - {id: a, handler: noop, dependencies: [c]}
        - {id: b, handler: noop, dependencies: [a]}
        - {id: c, handler: noop, dependencies: [b]}
        """,
        "cycle: a -> b -> c -> a",
        "a",
        "dependencies[0]",
        4,
    ),
    (
        "cycle-behind-a-root",
        """
        - {id: root, handler: noop}
        - id: x
          handler: noop
          dependencies: [root, y]
        - id: y
          handler: noop
          dependencies: [x]
        - {id: tail, handler: noop, dependencies: [y]}
        """,
        "cycle: x -> y -> x",
        "x",
        "dependencies[1]",
        7,
    ),
    (
        "self-dependency",
        """
        - {id: a, handler: noop, dependencies: [a]}
        """,
        "depends on itself",
        "a",
        "dependencies[0]",
        4,
    ),
    (
        "unknown-dependency",
        """
        - {id: fetch, handler: noop}
        - id: b
          handler: noop
          dependencies:
            - fetch
            - fecth
        """,
        "unknown dependency 'fecth'; did you mean 'fetch'?",
        "b",
        "dependencies[1]",
        9,
    ),
    (
        "duplicate-dependency",
        """
        - {id: a, handler: noop}
        - {id: b, handler: noop, dependencies: [a, a]}
        """,
        "listed twice",
        "b",
        "dependencies[1]",
        5,
    ),
    (
        "duplicate-id",
        """
        - {id: a, handler: noop}
        - {id: b, handler: noop}
        - {id: a, handler: noop}
        """,
        "duplicate node id 'a': nodes #1 and #3 both use it (lines 4 and 6)",
        "a",
        "id",
        6,
    ),
    (
        "reserved-id",
        """
        - {id: secrets, handler: noop}
        """,
        "reserved for templates",
        "secrets",
        "id",
        4,
    ),
    (
        "unknown-handler",
        """
        - {id: a, handler: htp}
        """,
        "unknown handler 'htp'; did you mean 'http'?",
        "a",
        "handler",
        4,
    ),
    (
        "unknown-handler-no-match",
        """
        - {id: a, handler: zzzzzz}
        """,
        "unknown handler 'zzzzzz' (known: call_external_service, choose, http",
        "a",
        "handler",
        4,
    ),
    (
        "config-unknown-key",
        """
        - id: a
          handler: http
          config:
            url: http://x
            verb: POST
        """,
        "unknown key 'verb'",
        "a",
        "config.verb",
        8,
    ),
    (
        "config-missing-key",
        """
        - id: a
          handler: call_external_service
          config:
            method: GET
        """,
        "missing required key 'url'",
        "a",
        "config.url",
        6,
    ),
    (
        "config-wrong-type",
        """
        - id: a
          handler: http
          config:
            url: http://x
            retries: many
        """,
        "valid integer",
        "a",
        "config.retries",
        8,
    ),
    (
        "template-syntax",
        """
        - id: a
          handler: http
          config:
            url: "http://x/{{ input.id "
        """,
        "template syntax error",
        "a",
        "config.url",
        7,
    ),
    (
        "template-unknown-name",
        """
        - {id: fetch, handler: noop}
        - id: b
          handler: http
          dependencies: [fetch]
          config:
            url: "{{ fecth.output.url }}"
        """,
        "template references unknown name 'fecth'; did you mean 'fetch'?",
        "b",
        "config.url",
        9,
    ),
    (
        "template-not-an-ancestor",
        """
        - {id: a, handler: noop}
        - {id: b, handler: noop}
        - id: c
          handler: http
          dependencies: [a]
          config:
            url: "http://x/{{ b.output.id }}"
        """,
        "template references node 'b' which is not an upstream dependency of 'c'",
        "c",
        "config.url",
        10,
    ),
    (
        "template-descendant",
        """
        - id: a
          handler: http
          config:
            url: "{{ b.output }}"
        - {id: b, handler: noop, dependencies: [a]}
        """,
        "template references node 'b' which is not an upstream dependency of 'a'",
        "a",
        "config.url",
        7,
    ),
    (
        "template-nodes-unknown",
        """
        - id: a
          handler: http
          config:
            url: "{{ nodes['get-x'].output }}"
        """,
        "template references unknown node 'get-x'",
        "a",
        "config.url",
        7,
    ),
    (
        "template-hyphen-hint",
        """
        - {id: get-x, handler: noop}
        - id: a
          handler: http
          dependencies: [get-x]
          config:
            url: "{{ get-x.output }}"
        """,
        "write ids with '-' as nodes['a-b']",
        "a",
        "config.url",
        9,
    ),
    (
        "template-self",
        """
        - id: a
          handler: http
          config:
            url: "{{ a.output }}"
        """,
        "template references node 'a' itself",
        "a",
        "config.url",
        7,
    ),
    (
        "when-not-an-ancestor",
        """
        - {id: a, handler: noop}
        - {id: b, handler: noop, when: "a.output.ok"}
        """,
        "template references node 'a' which is not an upstream dependency of 'b'",
        "b",
        "when",
        5,
    ),
    (
        "when-syntax",
        """
        - {id: a, handler: noop, when: "x >"}
        """,
        "template syntax error",
        "a",
        "when",
        4,
    ),
    (
        "compensate-unknown-handler",
        """
        - id: a
          handler: noop
          compensate: {handler: pyhton, config: {function: undo}}
        """,
        "unknown handler 'pyhton'; did you mean 'python'?",
        "a",
        "compensate.handler",
        6,
    ),
    (
        "compensate-config",
        """
        - id: a
          handler: noop
          compensate:
            config:
              params: {}
        """,
        "missing required key 'function'",
        "a",
        "compensate.config.function",
        7,
    ),
    (
        "node-unknown-key",
        """
        - id: a
          handler: noop
          depends_on: []
        """,
        "unknown key 'depends_on'",
        "a",
        "depends_on",
        6,
    ),
    (
        "bad-node-duration",
        """
        - {id: a, handler: noop, timeout: 5 minutes}
        """,
        "invalid duration '5 minutes'",
        "a",
        "timeout",
        4,
    ),
    (
        "bad-retry",
        """
        - id: a
          handler: noop
          retry:
            max_attempts: 0
        """,
        "greater than or equal to 1",
        "a",
        "retry.max_attempts",
        7,
    ),
    (
        "bad-trigger-rule",
        """
        - {id: a, handler: noop, trigger_rule: sometimes}
        """,
        "all_success",
        "a",
        "trigger_rule",
        4,
    ),
    (
        "bad-node-id",
        """
        - {id: "has space", handler: noop}
        """,
        "should match pattern",
        "has space",
        "id",
        4,
    ),
]


@pytest.mark.parametrize(
    ("nodes", "fragment", "node", "field", "line"),
    [case[1:] for case in BAD_NODES],
    ids=[case[0] for case in BAD_NODES],
)
def test_bad_nodes(
    nodes: str, fragment: str, node: str | None, field: str | None, line: int | None
) -> None:
    text = HEADER + textwrap.indent(textwrap.dedent(nodes).strip("\n"), "    ") + "\n"
    issue = _one(_errors(text), fragment)
    assert (issue.node, issue.field, issue.line) == (node, field, line), str(issue)


BAD_WORKFLOWS: list[tuple[str, str, str, str | None, int | None]] = [
    (
        "workflow-unknown-key",
        """
        name: wf
        owner: me
        dag: {nodes: [{id: a, handler: noop}]}
        """,
        "unknown key 'owner'",
        "owner",
        2,
    ),
    (
        "workflow-bad-timeout",
        """
        name: wf
        timeout: forever
        dag: {nodes: [{id: a, handler: noop}]}
        """,
        "invalid duration 'forever'",
        "timeout",
        2,
    ),
    (
        "defaults-bad-retry",
        """
        name: wf
        defaults:
          retry:
            initial_delay: 10s
            max_delay: 1s
        dag: {nodes: [{id: a, handler: noop}]}
        """,
        "max_delay must be >= initial_delay",
        "defaults.retry",
        3,
    ),
    (
        "empty-dag",
        """
        name: wf
        dag: {nodes: []}
        """,
        "at least 1 item",
        "dag.nodes",
        2,
    ),
    (
        "no-name",
        """
        dag: {nodes: [{id: a, handler: noop}]}
        """,
        "missing required key 'name'",
        "name",
        None,
    ),
    (
        "unknown-format",
        """
        steps: []
        """,
        "cannot tell the workflow format",
        None,
        None,
    ),
    (
        "malformed-yaml",
        """
        name: wf
        dag:
          nodes:
            - id: a
              handler: noop
             bad: indent
        """,
        "invalid YAML",
        None,
        6,
    ),
    (
        "malformed-yaml-flow",
        """
        name: wf
        dag: {nodes: [{id: a, handler: noop}
        """,
        "invalid YAML",
        None,
        3,
    ),
    (
        "duplicate-yaml-key",
        """
        name: wf
        dag: {nodes: [{id: a, handler: noop}]}
        name: again
        """,
        "duplicate key 'name'",
        None,
        3,
    ),
]


@pytest.mark.parametrize(
    ("text", "fragment", "field", "line"),
    [case[1:] for case in BAD_WORKFLOWS],
    ids=[case[0] for case in BAD_WORKFLOWS],
)
def test_bad_workflows(text: str, fragment: str, field: str | None, line: int | None) -> None:
    issue = _one(_errors(text), fragment)
    assert issue.node is None
    assert (issue.field, issue.line) == (field, line), str(issue)


def test_all_issues_are_reported_at_once() -> None:
    issues = _errors(
        """
        name: wf
        colour: blue
        dag:
          nodes:
            - {id: a, handler: noop, dependencies: [c]}
            - {id: b, handler: noop, dependencies: [a, ghost]}
            - {id: c, handler: noop, dependencies: [b], timeout: soon}
            - {id: d, handler: nope}
            - id: e
              handler: http
              config: {url: "{{ d.output }}"}
        """
    )
    messages = " | ".join(issue.message for issue in issues)
    for fragment in (
        "unknown key 'colour'",
        "invalid duration 'soon'",
        "unknown dependency 'ghost'",
        "cycle: a -> b -> c -> a",
        "unknown handler 'nope'",
    ):
        assert fragment in messages
    # With a cycle in the graph, ancestry cannot be decided: no guess is reported.
    assert "not an upstream dependency" not in messages


def test_ancestor_references_are_accepted() -> None:
    loaded = load_definition(
        {
            "name": "ok",
            "dag": {
                "nodes": [
                    {"id": "input", "handler": "input"},
                    {"id": "a-1", "handler": "noop", "dependencies": ["input"]},
                    {"id": "b", "handler": "noop", "dependencies": ["a-1"]},
                    {
                        "id": "c",
                        "handler": "http",
                        "dependencies": ["b"],
                        "when": "nodes['a-1'].output.ok and input.flag",
                        "config": {
                            "url": "http://x/{{ input.user }}/{{ input.output.user_id }}",
                            "headers": {"Authorization": "Bearer {{ secrets.TOKEN }}"},
                            "json_body": "{{ nodes['a-1'].output }}",
                            "timeout": "{{ input.timeout }}",
                            "retries": "{{ b.output.n }}",
                        },
                        "compensate": {
                            "handler": "python",
                            "config": {"function": "undo", "params": {"id": "{{ c.output }}"}},
                        },
                    },
                    {
                        "id": "d",
                        "handler": "noop",
                        "config": {"loop": "{% for x in range(3) %}{{ x }}{% endfor %}"},
                    },
                ]
            },
        },
        registry=REGISTRY,
    )
    assert len(loaded.spec.dag.nodes) == 5


def test_template_values_relax_only_their_own_field() -> None:
    issues = _errors(
        """
        name: wf
        dag:
          nodes:
            - id: a
              handler: http
              config:
                url: "{{ input.url }}"
                retries: lots
                extra: "{{ input.x }}"
        """
    )
    fields = {issue.field for issue in issues}
    assert fields == {"config.retries", "config.extra"}


def test_raw_keys_are_the_handlers_business() -> None:
    # `expression` is evaluated by the handler itself, with names of its own.
    loaded = load_definition(
        {
            "name": "raw",
            "dag": {
                "nodes": [
                    {
                        "id": "pick",
                        "handler": "choose",
                        "config": {"expression": "{{ item.kind == 'a' and whatever }}"},
                    }
                ]
            },
        },
        registry=REGISTRY,
    )
    assert loaded.spec.dag.nodes[0].config["expression"].startswith("{{")


def test_validate_spec_directly() -> None:
    spec = WorkflowSpec.model_validate(
        {
            "name": "direct",
            "dag": {
                "nodes": [
                    {"id": "a", "handler": "noop", "dependencies": ["b"]},
                    {"id": "b", "handler": "noop", "dependencies": ["a"]},
                ]
            },
        }
    )
    issues = validate_spec(spec, REGISTRY)
    assert [(i.node, i.field, i.message) for i in issues] == [
        ("a", "dependencies[0]", "cycle: a -> b -> a")
    ]
    located = check_spec(spec, REGISTRY)
    assert located[0].index == 0
    assert located[0].path == ("dependencies", 0)


def test_format_path() -> None:
    assert format_path(("config", "headers", 0, "x")) == "config.headers[0].x"
    assert format_path(()) == ""


def _chain(count: int) -> dict[str, Any]:
    nodes: list[dict[str, Any]] = [{"id": "n0", "handler": "noop"}]
    nodes += [
        {"id": f"n{i}", "handler": "noop", "dependencies": [f"n{i - 1}"]} for i in range(1, count)
    ]
    return {"name": "chain", "dag": {"nodes": nodes}}


def test_long_chain_with_far_references() -> None:
    # Every node reads the first one, which is an ancestor but not a parent: the per-target
    # walk must stay linear (a per-pair walk would be quadratic here).
    data = _chain(5_000)
    for node in data["dag"]["nodes"][2:]:
        node["config"] = {"v": "{{ n0.output }}"}
    data["dag"]["nodes"][10]["config"] = {"v": "{{ n20.output }}"}
    with pytest.raises(DefinitionError) as info:
        load_definition(data, registry=REGISTRY)
    assert [(i.node, i.message) for i in info.value.issues] == [
        ("n10", "template references node 'n20' which is not an upstream dependency of 'n10'")
    ]


def test_long_cycle_is_found_without_recursion() -> None:
    data = _chain(50_000)
    data["dag"]["nodes"][0]["dependencies"] = ["n49999"]
    with pytest.raises(DefinitionError) as info:
        # Past the default node limit on purpose: the walk itself is under test.
        load_definition(data, registry=REGISTRY, limits=DefinitionLimits(max_nodes=50_000))
    (issue,) = info.value.issues
    assert issue.message.startswith("cycle: n0 -> n1 -> n2")
    assert issue.message.endswith("n49999 -> n0")
