"""Which templates render in the caller's loop (light) and which in a render thread."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.templates.weight import MAX_LIGHT_EXPRESSION, is_light, renders_off_loop

MACRO = "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% endif %}{% endmacro %}{{ m(40) }}"


@pytest.mark.parametrize(
    "source",
    [
        "{{ a.output }}",
        "{{ a.output.x.y }}",
        "{{input.who}}",
        "{{- a.output -}}",
        "{{ nodes['x-y'].output.a }}",
        '{{ nodes["x-y"].output[0].b }}',
        "{{ a.output.score > 0.8 and not b.output.flag }}",
        "{{ a.output.x == 'yes' or (b.output.n != -1) }}",
        "{{ 'err' in a.output.text }}",
        "{{ a.output.x is none }}",
        "{{ a.output.x if a.output.ok else 0 }}",
        "{{ true }}",
        "{{ 1 > 2 }}",
    ],
)
def test_reads_and_comparisons_are_light(source: str) -> None:
    assert is_light(source)


@pytest.mark.parametrize(
    "source",
    [
        MACRO,
        "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
        "{% for a in input.s %}{% for b in input.s %}{% endfor %}{% endfor %}",
        "{{ range(10) }}",
        "{{ a.output.items() }}",
        "{{ (a.output)(1) }}",
        "{{ a.output | length }}",
        "{{ a.output[b.output] }}",
        "{{ [1, 2] }}",
        "{{ {'a': 1} }}",
        "{{ a.output * 1000 }}",
        "{{ a.output ~ b.output }}",
        "{{ a.output + b.output }}",
        "{{ 9 ** 9999 }}",
        "{{ '{:{}}'.format(1, 10**8) }}",
        "{{ '%*d' % (10**8, 1) }}",
        "hello {{ a.output }}",
        "{{ a.output }}{{ b.output }}",
        "{{ a.output }} {# a comment #}",
        "{% if a.output %}x{% endif %}",
        "{{ lipsum() }}",
        "{{ " + " and ".join(["a.output"] * 40) + " }}",  # too long to be light
    ],
)
def test_anything_that_computes_is_not_light(source: str) -> None:
    assert not is_light(source)


def test_a_light_expression_has_a_length_limit() -> None:
    longest = "{{ " + "a" * MAX_LIGHT_EXPRESSION + " }}"
    assert is_light(longest)
    assert not is_light(longest.replace("a", "aa", 1))


def test_a_dunder_name_is_still_a_name() -> None:
    # The sandbox refuses unsafe attributes at render time, inline or not.
    assert is_light("{{ x.__class__ }}")


@pytest.mark.parametrize(
    ("handler", "config", "when"),
    [
        ("noop", {"value": MACRO}, None),
        ("noop", {"value": {"deep": [1, {"x": MACRO}]}}, None),
        ("noop", {"value": 1}, MACRO),
        ("noop", {"value": 1}, "a.output | length > 2"),
        ("output", {"value": "total: {{ a.output }}"}, None),
        ("condition", {"cases": [{"when": "a.output | length", "then": ["b"]}]}, None),
        ("condition", {"cases": [{"when": "{% for x in y %}{% endfor %}", "then": ["b"]}]}, None),
        ("map", {"items": [1], "handler": "noop", "config": {"value": "{{ item * 2 }}"}}, None),
        (
            "map",
            {
                "items": [1],
                "handler": "condition",
                "config": {"cases": [{"when": "range(99) | list", "then": ["b"]}]},
            },
            None,
        ),
        ("http", {"url": "http://x/{{ a.output.id }}"}, None),
    ],
)
def test_an_attempt_with_a_heavy_template_anywhere_renders_off_loop(
    handler: str, config: dict[str, Any], when: str | None
) -> None:
    assert renders_off_loop(handler, config, when)


@pytest.mark.parametrize(
    ("handler", "config", "when"),
    [
        ("noop", {}, None),
        ("noop", {"value": 1}, None),
        ("noop", {"value": "{{ a.output }}", "other": ["{{ input.x }}", 3]}, None),
        ("noop", {"value": 1}, "a.output.ok"),
        ("noop", {"value": 1}, "{{ a.output.n > 2 }}"),
        ("output", {"value": "{{ a.output }}"}, None),
        ("condition", {"cases": [{"when": "a.output.score > 0.8", "then": ["b"]}]}, None),
        (
            "map",
            {"items": "{{ a.output }}", "handler": "noop", "config": {"v": "{{ item }}"}},
            None,
        ),
        ("noop", {"value": "text without markup, {not a template}"}, None),
    ],
)
def test_light_and_template_free_attempts_stay_in_the_loop(
    handler: str, config: dict[str, Any], when: str | None
) -> None:
    assert not renders_off_loop(handler, config, when)


def test_aliases_are_resolved_for_conditions_and_maps() -> None:
    names = {"foreach": "map", "choose": "condition"}
    config = {"items": [1], "handler": "choose", "config": {"cases": [{"when": "x | int"}]}}
    assert renders_off_loop("foreach", config, None, names.get)
    assert not renders_off_loop("foreach", config, None, lambda name: name)
    assert renders_off_loop("choose", {"cases": [{"when": "x | int"}]}, None, names.get)
