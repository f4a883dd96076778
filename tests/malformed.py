"""Malformed input, one table for every way in: request bodies, query parameters, headers,
definition files and command-line values.

Each body case is raw bytes (JSON built by hand: ``json.dumps`` could not write most of
them) sent to one route, with the status the API must answer and a word its problem must
contain. The same tables run in-process (tests/integration/test_api_malformed.py) and
against a real ``orchestrion serve`` (tests/e2e/test_malformed_server.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BAD_DURATIONS",
    "BAD_INSTANTS",
    "BODY_CASES",
    "DEEP",
    "HUGE_INT",
    "SURROGATE",
    "TEMPLATE_CASES",
    "BodyCase",
    "definition",
    "json_text",
]

SURROGATE = '"\\ud800"'  # a lone surrogate, as a JSON escape
DEEP = "[" * 100_000 + "]" * 100_000
HUGE_INT = "9" * 5_000
PLACES = ("definition name", "node id", "config value", "config key", "description")


def definition(**node: Any) -> dict[str, Any]:
    """A valid two-node definition; ``node`` overrides fields of the second node."""
    return {
        "name": "malformed",
        "dag": {
            "nodes": [
                {"id": "a", "handler": "noop", "config": {"value": 1}},
                {"id": "b", "handler": "noop", "dependencies": ["a"], **node},
            ]
        },
    }


def json_text(value: Any, **raw: str) -> str:
    """``value`` as JSON with each ``"@name@"`` string replaced by the raw text ``raw[name]``."""
    text = json.dumps(value)
    for name, replacement in raw.items():
        text = text.replace(f'"@{name}@"', replacement)
    return text


def _definition_with(place: str, raw: str) -> str:
    spec: dict[str, Any] = definition(config={"value": "@x@"})
    if place == "definition name":
        spec["name"] = "@x@"
    elif place == "node id":
        spec["dag"]["nodes"][1]["id"] = "@x@"
    elif place == "config key":
        spec["dag"]["nodes"][1]["config"] = {"@key@": 1}
        return json_text(spec).replace('"@key@"', raw if raw.startswith('"') else '"k"')
    elif place == "description":
        spec["description"] = "@x@"
    return json_text(spec, x=raw)


@dataclass(frozen=True)
class BodyCase:
    """A body for one route. ``route``: submit, trigger, start, approve or event (``{id}``/
    ``{name}`` filled in by the test); ``status``: the answer; ``says``: a word the problem
    must contain."""

    label: str
    route: str
    body: bytes
    status: int
    says: str
    content_type: str = "application/json"


def _cases() -> list[BodyCase]:
    cases: list[BodyCase] = []
    bad_values = {
        "surrogate": (SURROGATE, "surrogate"),
        "deep": (DEEP, "nested"),
        "huge-int": (HUGE_INT, "digits"),
        "nan": ("NaN", "NaN"),
        "infinity": ("-Infinity", "Infinity"),
        "overflow": ("1e400", "infinity"),
    }
    for kind, (raw, says) in bad_values.items():
        for place in PLACES:
            if kind != "surrogate" and place in ("node id", "config key", "definition name"):
                continue  # only text can be a name or a key
            body = _definition_with(place, raw)
            cases.append(BodyCase(f"submit {place} {kind}", "submit", body.encode(), 422, says))
        inputs = json_text({"input_params": {"who": "@x@"}}, x=raw).encode()
        overrides = json_text({"node_overrides": {"b": {"value": "@x@"}}}, x=raw).encode()
        legacy = json_text({"b": {"value": "@x@"}}, x=raw).encode()  # reference 003 form
        for route in ("trigger", "start"):
            cases.append(BodyCase(f"{route} input {kind}", route, inputs, 422, says))
            cases.append(BodyCase(f"{route} override {kind}", route, overrides, 422, says))
        cases.append(BodyCase(f"trigger top-level override {kind}", "trigger", legacy, 422, says))
        decision = json_text({"by": "@x@"}, x=raw).encode()
        cases.append(BodyCase(f"approve body {kind}", "approve", decision, 422, says))
    surrogate_key = b'{"input_params": {' + SURROGATE.encode() + b": 1}}"
    cases.append(
        BodyCase("trigger input key surrogate", "trigger", surrogate_key, 422, "surrogate")
    )
    override_key = b'{"node_overrides": {"b": {' + SURROGATE.encode() + b": 1}}}"
    cases.append(
        BodyCase("trigger override key surrogate", "trigger", override_key, 422, "surrogate")
    )
    not_utf8 = b'{"input_params": {"who": "\xed\xa0\x80"}}'  # a surrogate encoded as UTF-8
    cases.append(BodyCase("trigger raw surrogate bytes", "trigger", not_utf8, 422, "UTF-8"))
    cases.append(BodyCase("submit deep top level", "submit", DEEP.encode(), 422, "nested"))
    # A key given twice: one reader takes the first, another the last (an event's id too).
    twice = {
        "trigger input": b'{"input_params": {"who": 1, "who": 2}}',
        "trigger override": b'{"node_overrides": {"b": {"value": 1, "value": 2}}}',
        "trigger top-level": b'{"input_params": {}, "input_params": {"who": 1}}',
        "start input": b'{"input_params": {"who": 1, "who": 2}}',
        "approve body": b'{"by": "ada", "by": "eve"}',
        "event id": b'{"id": "evt-1", "id": "evt-2", "x": 1}',
        "event payload": b'{"doc": {"path": "a", "path": "b"}}',
    }
    for label, body in twice.items():
        route = label.split()[0]
        cases.append(BodyCase(f"{label} key twice", route, body, 422, "given twice"))
    # The same definitions as YAML: the loader applies the same rules, with line numbers.
    yaml_cases = {
        "surrogate": ('name: "\\ud800"\n', "Unicode"),
        "deep": ("name: x\ndag: " + "[" * 100_000 + "]" * 100_000 + "\n", "nest"),
        "huge-int": (
            "name: x\ndag:\n  nodes:\n  - id: a\n    handler: noop\n    config:\n"
            f"      value: {HUGE_INT}\n",
            "digits",
        ),
        "nan": (
            "name: x\ndag:\n  nodes:\n  - id: a\n    handler: noop\n    config:\n"
            "      value: .nan\n",
            "nan",
        ),
        "bad-date": (
            "name: x\ndag:\n  nodes:\n  - id: a\n    handler: noop\n    config:\n"
            "      value: 2020-13-45\n",
            "month",
        ),
    }
    for kind, (text, says) in yaml_cases.items():
        cases.append(
            BodyCase(f"submit yaml {kind}", "submit", text.encode(), 422, says, "application/yaml")
        )
    return cases


BODY_CASES = _cases()

TEMPLATE_CASES = [
    ("{{ a.output | nosuchfilter }}", "no filter named 'nosuchfilter'"),
    ("prefix {{ a.output | nosuchfilter }}", "no filter named 'nosuchfilter'"),
    ("{{ a.output is nosuchtest }}", "no test named 'nosuchtest'"),
    ("{{ 1 if a.output else a.output | nosuch }}", "no filter named 'nosuch'"),
    ("{% filter nosuch %}x{% endfilter %}", "no filter named 'nosuch'"),
    ("{{ a.output }", "syntax error"),
    ("{% for x in a.output %}", "syntax error"),
    ("{% for loop in a.output %}{% endfor %}", "loop"),
    ("{% block x %}{% endblock %}{% block x %}{% endblock %}", "defined twice"),
    ('{% include "other" %}', "'include' is not supported"),
    ('{% import "other" as o %}', "'import' is not supported"),
    ('{% extends "other" %}', "'extends' is not supported"),
    ("{{ " + "(" * 5_000 + "1" + ")" * 5_000 + " }}", "nested too deeply"),
    ("{{ " + "-" * 5_000 + "1 }}", "nested too deeply"),
]

BAD_DURATIONS = ["1e308", "inf", "nan", "-1", "-0", "1e-300", "", "soon", "1d-1h", "P", "PT",
                 "99999999999999999999d", " 30d", "30D", "0x10"]  # fmt: skip
BAD_INSTANTS = ["", "nan", "inf", "-inf", "-1", "-0.5", "1e308", "1e-400x", "yesterday",
                "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-01-01T24:00:00Z",
                "2026-01-01T00:00:00+24:00", "99999-01-01T00:00:00Z", "2026-01-01",
                "253402300800"]  # fmt: skip
