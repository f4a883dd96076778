"""YAML aliases (yaml_aliases.py) in every YAML a user gives: a recursive alias is refused
with the line it is on, and aliases cannot expand a definition past ``definitions.max_bytes``
(nor a policy file far past its own size); both are found on the node graph, quickly, before
any value is built from it."""

from __future__ import annotations

import textwrap
import time
from pathlib import Path

import pytest
import yaml

from orchestrion.definition.limits import DefinitionLimits
from orchestrion.errors import ConfigurationError, DefinitionError, DefinitionIssue
from orchestrion.governance.policy import load_policy
from orchestrion.handlers.loading import load_definition
from orchestrion.yaml_aliases import expanded_bytes, safe_load

FAST = 2.0  # seconds: a cycle used to hang for ever, a bomb to take many seconds


def _issue(text: str, limits: DefinitionLimits | None = None) -> DefinitionIssue:
    started = time.monotonic()
    with pytest.raises(DefinitionError) as info:
        if limits is None:
            load_definition(textwrap.dedent(text))
        else:
            load_definition(textwrap.dedent(text), limits=limits)
    assert time.monotonic() - started < FAST
    (issue,) = info.value.issues
    return issue


# Each text refers back to a value from inside it; `line` is where the reference is.
CYCLES: list[tuple[str, int]] = [
    (  # a node's config holds the node
        """\
        name: x
        dag:
          nodes:
            - &n
              id: n
              handler: noop
              config: {self: *n}
        """,
        7,
    ),
    (  # the dag inside one of its node's config
        """\
        name: x
        dag: &d
          nodes:
            - id: n
              handler: noop
              config: *d
        """,
        6,
    ),
    (  # an anchor on the root
        """\
        &root
        name: x
        dag:
          nodes:
            - {id: n, handler: noop, config: {all: *root}}
        """,
        5,
    ),
    (  # a sequence that holds itself (the line is its key's)
        """\
        name: x
        dag:
          nodes:
            - id: n
              handler: noop
              config:
                items: &l
                  - 1
                  - *l
        """,
        7,
    ),
    (  # a flow sequence
        """\
        name: x
        dag: {nodes: [{id: n, handler: noop, config: {v: &l [1, *l]}}]}
        """,
        2,
    ),
    (  # a merge key
        """\
        name: x
        dag:
          nodes:
            - &n
              id: n
              handler: noop
              config:
                <<: *n
        """,
        8,
    ),
    (  # through two anchors: a -> b -> a
        """\
        name: x
        dag:
          nodes:
            - id: n
              handler: noop
              config:
                a: &a
                  b: &b
                    back: *a
                other: *b
        """,
        9,
    ),
    (  # the node list inside itself
        """\
        name: x
        dag:
          nodes: &nodes
            - id: n
              handler: noop
              config: {nodes: *nodes}
        """,
        6,
    ),
    (  # a mapping used as a key of itself
        """\
        name: x
        dag:
          nodes:
            - id: n
              handler: noop
              config: &c
                ? *c
                : 1
        """,
        6,  # a key has no line of its own: the line of the mapping's key
    ),
]


@pytest.mark.parametrize(("text", "line"), CYCLES)
def test_a_recursive_alias_is_refused_with_its_line(text: str, line: int) -> None:
    issue = _issue(text)
    assert issue.code == "recursive_alias"
    assert "recursive alias" in issue.message
    assert issue.line == line, issue


@pytest.mark.parametrize(("text", "line"), CYCLES[:3])
def test_a_recursive_alias_is_refused_under_any_limits(text: str, line: int) -> None:
    own = DefinitionLimits().for_own_files()  # one's own files: no size limit
    assert _issue(text, own).code == "recursive_alias"


def test_a_recursive_alias_in_a_file_is_refused(tmp_path: Path) -> None:
    file = tmp_path / "flow.yaml"
    file.write_text(textwrap.dedent(CYCLES[0][0]))
    with pytest.raises(DefinitionError) as info:
        load_definition(file)
    assert info.value.issues[0].line == 7
    assert "recursive alias" in str(info.value)


def _bomb(levels: int, width: int = 10, leaf: str = "xxxxxxxxxx") -> str:
    """A node config of ``levels`` levels, each referring ``width`` times to the previous."""
    lines = ["name: x", "dag:", "  nodes:", "    - id: n", "      handler: noop", "      config:"]
    lines.append(f"        l0: &l0 [{', '.join([leaf] * width)}]")
    for level in range(1, levels):
        lines.append(f"        l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * width)}]")
    return "\n".join(lines) + "\n"


def test_aliases_cannot_expand_a_definition_past_max_bytes() -> None:
    text = _bomb(6)  # about 500 bytes, 11 MB once expanded
    assert len(text) < 1000
    issue = _issue(text)
    assert issue.code == "limit_exceeded"
    assert "definitions.max_bytes" in issue.message
    assert "more than 1048576 bytes" in issue.message
    assert issue.line == 11  # the first value past the limit: l4


@pytest.mark.parametrize("max_bytes", [2_000, 20_000, 200_000])
def test_the_alias_budget_follows_max_bytes(max_bytes: int) -> None:
    limits = DefinitionLimits(max_bytes=max_bytes)
    text = _bomb(4)  # about 125 KB expanded
    if max_bytes < 150_000:
        issue = _issue(text, limits)
        assert f"more than {max_bytes} bytes" in issue.message
    else:
        assert load_definition(text, limits=limits).spec.dag.nodes[0].config["l3"]


def test_a_bomb_is_refused_before_it_is_built() -> None:
    # 10**30 values: only the node graph is ever walked.
    issue = _issue(_bomb(30, leaf="x"), DefinitionLimits().for_own_files())
    assert issue.code == "limit_exceeded"


def test_the_stored_definition_stays_within_max_bytes() -> None:
    limits = DefinitionLimits(max_bytes=200_000)
    loaded = load_definition(_bomb(4), limits=limits)  # accepted: within the limit
    dumped = loaded.spec.model_dump_json()
    assert len(dumped) < 2 * limits.max_bytes


def test_anchors_merge_keys_and_shared_values_still_work() -> None:
    text = textwrap.dedent(
        """\
        name: anchors
        dag:
          nodes:
            - &base {id: a, handler: noop, config: {v: &v [1, 2, 3]}}
            - <<: *base
              id: b
              dependencies: [a]
              config: {v: *v, w: *v}
        """
    )
    nodes = load_definition(text).spec.dag.nodes
    assert nodes[1].config == {"v": [1, 2, 3], "w": [1, 2, 3]}


def test_expanded_bytes_counts_shared_values_each_time() -> None:
    root = yaml.compose("a: &a [xx, yy]\nb: [*a, *a, *a]\n")
    assert root is not None
    size, _ = expanded_bytes(root, 10**9)
    single, _ = expanded_bytes(yaml.compose("[xx, yy]"), 10**9)  # type: ignore[arg-type]
    assert size > 4 * single


# ---------------------------------------------------------------- other YAML: policy files


@pytest.mark.parametrize(
    "text",
    [
        "definitions: &d\n  max_bytes: 100\n  again: *d\n",
        "&root\ndefinitions: {max_bytes: 100}\nhttp: *root\n",
        "templates: &t\n  <<: *t\n",
        "code: &l\n  - *l\n",
    ],
)
def test_a_recursive_alias_in_a_policy_file_is_refused(text: str, tmp_path: Path) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(text)
    started = time.monotonic()
    with pytest.raises(ConfigurationError) as info:
        load_policy(file)
    assert time.monotonic() - started < FAST
    assert "recursive alias" in str(info.value)
    assert "line" in str(info.value)


def test_an_alias_bomb_in_a_policy_file_is_refused(tmp_path: Path) -> None:
    lines = ["x0: &x0 [a, a, a, a, a, a, a, a, a, a]"]
    for level in range(1, 9):
        lines.append(f"x{level}: &x{level} [{', '.join([f'*x{level - 1}'] * 10)}]")
    file = tmp_path / "policy.yaml"
    file.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigurationError) as info:
        load_policy(file)
    assert "YAML aliases expand the policy" in str(info.value)


def test_a_policy_file_with_ordinary_anchors_loads(tmp_path: Path) -> None:
    file = tmp_path / "policy.yaml"
    file.write_text(
        "definitions: &d {max_nodes: 50}\ntemplates: {timeout_seconds: 2}\nx-copy: *d\n"
        if False
        else "definitions: &d {max_nodes: 50, max_problems: 50}\n"
    )
    assert load_policy(file).policy.definitions.max_nodes == 50


def test_safe_load_refuses_cycles_and_loads_the_rest() -> None:
    with pytest.raises(yaml.MarkedYAMLError, match="recursive alias"):
        safe_load("a: &a {b: *a}\n", 10_000)
    with pytest.raises(yaml.MarkedYAMLError, match="more than 100 bytes"):
        safe_load("a: &a [" + ", ".join(["x" * 10] * 5) + "]\nb: [*a, *a, *a]\n", 100)
    assert safe_load("a: &a [1]\nb: *a\n", 10_000) == {"a": [1], "b": [1]}
    assert safe_load("", 10) is None
