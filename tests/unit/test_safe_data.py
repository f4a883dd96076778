"""``safe_data``: the strict JSON decoder and value check, the YAML loader's value errors,
template compile errors, and the API's parameter grammars against their parsers."""

from __future__ import annotations

import json
import math
import re
from datetime import timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import orchestrion
from orchestrion import instants, safe_data
from orchestrion.api.params import _NAIVE, DURATION_PATTERN, EVENT_TYPE_PATTERN, MAX_EPOCH
from orchestrion.api.safe_json import TEXT_PATTERN
from orchestrion.definition.durations import parse_duration
from orchestrion.errors import DefinitionError
from orchestrion.handlers.loading import load_definition
from orchestrion.templates.rendering import template_info

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize(
    ("text", "code", "where"),
    [
        ('"\\ud800"', "invalid_unicode", "at the top level"),
        ('{"a": ["\\udfff"]}', "invalid_unicode", "at /a/0"),
        ('{"\\ud800": 1}', "invalid_unicode", "at /\\ud800"),
        ('{"a/b~c": "\\ud800x"}', "invalid_unicode", "at /a~1b~0c"),
        (DEEP, "too_deep", "at line 1, column 65"),
        ("[" * 65 + "]" * 65, "too_deep", "at /0/0"),
        ("{\n" + '"a":' * 0 + '"x": ' + "[" * 2000 + "]" * 2000 + "}", "too_deep", "line 2"),
        ("9" * 5000, "integer_too_large", "at the top level"),
        ('{"n": -' + "1" * 101 + "}", "integer_too_large", "at /n"),
        ("[NaN]", "non_finite_number", "at /0"),
        ('{"x": Infinity}', "non_finite_number", "at /x"),
        ("-Infinity", "non_finite_number", "at the top level"),
        ("1e400", "overflow", "at the top level"),
        (b'{"a": "\xed\xa0\x80"}', "invalid_utf8", "at line 1, column 8"),
        (b"\n\xff", "invalid_utf8", "at line 2, column 1"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_loads_refuses_and_names_the_place(text: str | bytes, code: str, where: str) -> None:
    with pytest.raises(safe_data.UnsafeData) as caught:
        safe_data.loads(text)
    assert caught.value.code == code
    assert where in str(caught.value)
    str(caught.value).encode("utf-8")  # the message itself is always printable


@pytest.mark.parametrize(
    "text",
    [
        "[" * 64 + "]" * 64,
        "1" * 100,
        "-" + "1" * 100,
        '"\\ud83d\\ude00"',  # a surrogate pair is one character
        '"\\u0000 and tabs\\t"',
        "1e308",
        "0.1e-400",  # underflows to 0.0: finite
        '{"a": {"b": [true, false, null, 1.5, "x"]}}',
    ],
    ids=lambda v: v[:20],
)
def test_loads_accepts_what_is_within_the_bounds(text: str) -> None:
    assert safe_data.loads(text) == json.loads(text)


def test_syntax_errors_stay_json_decode_errors() -> None:
    with pytest.raises(json.JSONDecodeError):
        safe_data.loads('{"a": }')


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ({"a": "\udcff"}, "invalid_unicode"),
        ({"\ud800": 1}, "invalid_unicode"),
        ([10**100], "integer_too_large"),
        ({"x": (-(10**100),)}, "integer_too_large"),
        ({"x": float("nan")}, "non_finite_number"),
        ([float("-inf")], "non_finite_number"),
    ],
    ids=repr,
)
def test_check_walks_python_values(value: Any, code: str) -> None:
    with pytest.raises(safe_data.UnsafeData) as caught:
        safe_data.check(value)
    assert caught.value.code == code


def test_the_depth_bound_may_be_left_to_the_caller() -> None:
    deep = "[" * 200 + "]" * 200
    assert safe_data.loads(deep, max_depth=None) == json.loads(deep)
    with pytest.raises(safe_data.UnsafeData, match="more than 64 levels"):
        safe_data.loads(DEEP, max_depth=None)  # too deep for the parser itself


def test_check_bounds_depth_without_recursion() -> None:
    nested: Any = 1
    for _ in range(10_000):
        nested = {"k": nested}
    with pytest.raises(safe_data.UnsafeData, match="more than 64 levels"):
        safe_data.check(nested)
    safe_data.check({"a": [{"b": [10**99, "ok", 1.5, None]}]})


# ------------------------------------------------------------------ definitions, every source


def _spec(value: Any) -> dict[str, Any]:
    return {"name": "x", "dag": {"nodes": [{"id": "a", "handler": "noop", "config": {"v": value}}]}}


@pytest.mark.parametrize(
    ("source", "says"),
    [
        (_spec("\ud800"), "surrogate"),
        (_spec(10**200), "digits"),
        (_spec(math.nan), "nan"),
        ({"name": "a\x00b", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}, "control"),
        ('{"name": "\\ud800"}\n', "surrogate"),
        ("name: x\nv: " + "9" * 5000 + "\n", "digits"),
        ("name: x\nv: 0x" + "f" * 150 + "\n", "digits"),
        ("name: x\nv: 2020-13-45\n", "month must be in 1..12"),
        ("name: x\nv: 2020-01-01 25:00:00\n", "hour"),
        ("name: x\nv: .inf\n", "inf"),
        ("name: x\ndag: " + DEEP + "\n", "nest"),
        ('{"name": "x", "v":\n' + DEEP + "}", "line 2"),
    ],
    ids=lambda v: repr(v)[:30],
)
def test_definitions_from_every_source_raise_definition_error(source: Any, says: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        load_definition(source)
    assert says.lower() in str(caught.value).lower()


def test_orchestrion_run_raises_clean_errors_for_inputs() -> None:
    spec = {"name": "x", "dag": {"nodes": [{"id": "a", "handler": "noop"}]}}
    for inputs, says in (({"k": "\udc80"}, "surrogate"), ({"k": [math.inf]}, "inf")):
        with pytest.raises(DefinitionError, match=says) as caught:
            orchestrion.run(spec, inputs, database_url="memory://")
        assert caught.value.source == "execution inputs"
    with pytest.raises(DefinitionError, match="surrogate"):
        orchestrion.run(_spec("\ud800"), database_url="memory://")


# ------------------------------------------------------------------ templates


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("{{ x | nosuchfilter }}", "no filter named 'nosuchfilter'"),
        ("{{ x is nosuchtest }}", "no test named 'nosuchtest'"),
        ("{% if x %}{{ x | nope }}{% endif %}", "no filter named 'nope'"),
        ("{{ x }}\n{{ y | nope }}", "(template line 2)"),
        ("{% for loop in x %}{% endfor %}", "loop"),
        ("{% macro m(caller) %}{% endmacro %}{% call m() %}{% endcall %}", None),
        ('{% include "x" %}', "'include' is not supported"),
        ('{% from "x" import y %}', "'from' is not supported"),
        ("{{ " + "[" * 3000 + "]" * 3000 + " }}", "nested too deeply"),
        ("{{ x.output | tojson }}", None),
        ("{% for i in range(3) %}{{ i | string }}{% endfor %}", None),
    ],
    ids=lambda v: str(v)[:30],
)
def test_template_analysis_finds_compile_errors(source: str, says: str | None) -> None:
    error = template_info(source).error
    if says is None:
        assert error is None
    else:
        assert error is not None and says in error


# ------------------------------------------------------------------ the API's grammars


@settings(max_examples=300, deadline=None)
@given(st.from_regex(DURATION_PATTERN, fullmatch=True))
def test_every_duration_the_document_allows_parses(text: str) -> None:
    seconds = parse_duration(text)
    assert math.isfinite(seconds) and seconds >= 0


@settings(max_examples=300, deadline=None)
@given(st.from_regex(_NAIVE, fullmatch=True))
def test_every_offsetless_time_the_document_allows_parses(text: str) -> None:
    assert -62135596800 <= instants.parse_instant(text) <= MAX_EPOCH


# RFC 3339 offsets are whole minutes, up to 23:59 either way.
_OFFSETS = st.integers(-1439, 1439).map(lambda m: timezone(timedelta(minutes=m)))


@settings(max_examples=300, deadline=None)
@given(
    st.datetimes(timezones=_OFFSETS).map(lambda d: d.isoformat(timespec="microseconds"))
    | st.floats(0, MAX_EPOCH).map(repr)
    | st.integers(0, MAX_EPOCH).map(str)
)
def test_every_rfc3339_time_and_epoch_parses(text: str) -> None:
    assert math.isfinite(instants.parse_instant(text))


@pytest.mark.parametrize(
    ("pattern", "good", "bad"),
    [
        (DURATION_PATTERN, ["30d", "1h30m", "250ms", "P30D", "PT1.5S", "0"],
         ["-1", "1e3", "inf", "nan", "P", "PT", "30 d", "", "1" * 13]),
        (EVENT_TYPE_PATTERN, ["node.completed", "execution.retried"], ["true", "", "Node.x"]),
        (TEXT_PATTERN, ["any text\twith tabs é"], ["a\x00b", "a\nb", "\x7f"]),
    ],
)  # fmt: skip
def test_patterns(pattern: str, good: list[str], bad: list[str]) -> None:
    assert all(re.match(pattern, text) for text in good)
    assert not any(re.match(pattern, text) for text in bad)


@pytest.mark.parametrize("definition", ["name: \ud800\n", b"name: \xff\n"], ids=repr)
def test_the_client_refuses_a_definition_that_is_not_utf8(definition: str | bytes) -> None:
    from orchestrion.client.calls import default_headers, encode_definition

    with pytest.raises(ValueError, match="not UTF-8"):
        encode_definition(definition)
    with pytest.raises(ValueError, match="printable ASCII"):
        default_headers("k\udcff", None, "1")
    with pytest.raises(ValueError, match="printable ASCII"):
        default_headers(None, {"X-Client-ID": "café"}, "1")
