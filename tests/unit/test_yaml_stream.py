"""Plain YAML read from the parser's events: the safe loader's data, or handed over."""

from __future__ import annotations

import datetime

import pytest
import yaml

from orchestrion import load_definition
from orchestrion.definition.limits import DEFAULT_LIMITS
from orchestrion.definition.reading import read
from orchestrion.definition.yaml_stream import NOT_PLAIN, plain_data
from orchestrion.errors import DefinitionError

LOADERS = [yaml.SafeLoader] + ([yaml.CSafeLoader] if hasattr(yaml, "CSafeLoader") else [])

PLAIN = [
    "",
    "a: 1",
    "[1, 2, {b: c}]",
    "a: 2020-01-01\nb: 1.5\nc: null\nd: yes\ne: '1'\nf: 0x1F\ng: ~\nh: -0o17\ni: 1_000",
    "name: x\ndag:\n  nodes:\n    - id: a\n      handler: noop\n      dependencies: []\n",
    'a: "quoted: {{ x.output }}"\nb: |\n  two\n  lines\nc: >\n  folded\n',
    "1: one\n2.5: two\nnull: three\nfalse: four",
    "a: [[[[]]]]\nb: {}\nc: ''",
    "--- \nkey: value\n...\n",
    "é: ünïcode ✓",
]

NOT_PLAIN_TEXTS = {
    "duplicate key": "a: 1\nb: 2\na: 3",
    "anchor and alias": "a: &x [1]\nb: *x",
    "anchor only": "a: &x 1",
    "explicit tag": "a: !!str 1",
    "non-specific tag": "a: ! 1",
    "local tag": "a: !thing 1",
    "merge key": "base: {x: 1}\nother:\n  <<: {y: 2}",
    "unhashable key": "? [1]\n: 2",
    "two documents": "a: 1\n---\nb: 2",
    "syntax error": "a: [1, 2\nb: 3",
    "bad timestamp": "a: 2020-13-45",
    "huge integer": "a: " + "9" * 300,
    "integer past the digits allowed": "a: " + "9" * 150,
    "not a number": "a: .nan",
    "infinity": "a: -.inf",
    "lone surrogate": 'a: "\\ud800"',
}


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("text", PLAIN)
def test_plain_documents_give_the_safe_loaders_data(loader: type, text: str) -> None:
    expected = yaml.load(text, Loader=loader)
    got = plain_data(text, loader, 200)
    assert got == expected
    assert type(got) is type(expected)


@pytest.mark.parametrize("loader", LOADERS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("why", sorted(NOT_PLAIN_TEXTS))
def test_anything_but_plain_yaml_is_left_to_the_careful_reader(loader: type, why: str) -> None:
    assert plain_data(NOT_PLAIN_TEXTS[why], loader, 200) is NOT_PLAIN


def test_a_timestamp_keeps_its_type() -> None:
    assert plain_data("a: 2020-01-02", LOADERS[-1], 200) == {"a": datetime.date(2020, 1, 2)}


def test_a_plain_definition_keeps_no_lines_until_an_issue_needs_them() -> None:
    text = "name: x\ndag:\n  nodes:\n    - id: a\n      handler: noop\n"
    text += "    - id: b\n      handler: nope\n"
    document = read(text, "yaml", DEFAULT_LIMITS)
    assert document.lines is None
    with pytest.raises(DefinitionError) as info:
        load_definition(text, fmt="yaml")
    (issue,) = info.value.issues
    assert (issue.node, issue.field, issue.line) == ("b", "handler", 7)


def test_a_duplicate_key_is_still_named_with_its_line() -> None:
    text = "name: x\ndag:\n  nodes:\n    - id: a\n      handler: noop\n      id: b\n"
    with pytest.raises(DefinitionError) as info:
        load_definition(text, fmt="yaml")
    assert any(i.code == "duplicate_key" and i.line == 6 for i in info.value.issues)


def test_a_bad_value_is_still_named_with_its_line() -> None:
    text = "name: x\ndag:\n  nodes:\n    - id: a\n      handler: noop\n"
    text += "      config: {d: 2020-13-45}\n"
    with pytest.raises(DefinitionError) as info:
        load_definition(text, fmt="yaml")
    (issue,) = info.value.issues
    assert (issue.code, issue.line) == ("yaml_syntax", 6)


def test_a_refused_number_is_still_named_by_where_it_is() -> None:
    text = "name: x\ndag:\n  nodes:\n    - id: a\n      handler: noop\n      config: {v: .nan}\n"
    with pytest.raises(DefinitionError) as info:
        load_definition(text, fmt="yaml")
    (issue,) = info.value.issues
    assert issue.code == "non_finite_number"
    assert "/dag/nodes/0/config/v" in issue.message
    assert issue.line == 6
