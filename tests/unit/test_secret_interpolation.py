"""In a request field a secret may only be interpolated: nothing may compute with its value.

Any computation on a secret (a filter, an operator, a comparison, a subscript, a method, a
loop, a macro, a ``set``, a condition) can be made into an oracle: an error message that
quotes its result, or an error kind, a branch or a length that depends on it. Validation
refuses each such template in the headers, json and body of an http node, naming node and
field; the sandbox reports a failed render of a secret-reading template by kind only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from orchestrion.definition.secret_flow import INTERPOLATION_ONLY
from orchestrion.errors import DefinitionError, PermanentNodeError
from orchestrion.execution import enforce
from orchestrion.governance.runtime import Governance
from orchestrion.governance.secret_scrub import Scrubber
from orchestrion.handlers.loading import load_definition
from orchestrion.templates.rendering import build_context, render_value
from orchestrion.templates.secrets import secret_use

SECRET = "Oracle-S3cret-Value-77"

ATTACKS = [
    # The reported ones: an integer (no quotes) in an error, a character in a quoted part,
    # the kind of error as a yes/no answer.
    "{{ {}[secrets.TOKEN.encode().hex()|int(base=16)] }}",
    "{{ {}[secrets.TOKEN[3]] ~ 'ABCxyz0123456789' }}",
    "{{ (1/0) if secrets.TOKEN < 'U' else {}.x }}",
    # Encodings and subscripts.
    "{{ {}[secrets.TOKEN|length] }}",
    "{{ secrets.TOKEN.encode().hex() }}",
    "{{ secrets.TOKEN[0] }}",
    "{{ secrets['TOKEN'][1:4] }}",
    "{{ secrets.TOKEN[::-1] }}",
    "{{ secrets.TOKEN.upper() }}",
    "{{ secrets.TOKEN.x }}",
    # Comparisons, tests and conditions.
    "{% if secrets.TOKEN < 'M' %}{{ 1/0 }}{% endif %}",
    "{% if secrets.TOKEN %}a{% endif %}",
    "{{ 'a' if secrets.TOKEN == 'x' else 'b' }}",
    "{{ secrets.TOKEN if true }}",
    "{{ secrets.TOKEN if input.x else '' }}",
    "{{ 'O' in secrets.TOKEN }}",
    "{{ secrets.TOKEN is defined }}",
    "{{ (secrets.TOKEN ~ 'x') is defined }}",
    "{{ secrets.TOKEN == 'x' }}",
    # Filters.
    "{{ secrets.TOKEN|length }}",
    "{{ secrets.TOKEN|first }}",
    "{{ secrets.TOKEN|list }}",
    "{{ secrets.TOKEN|string }}",
    "{{ secrets.TOKEN|urlencode }}",
    "{{ secrets.TOKEN|lower }}",
    "{{ secrets.TOKEN|default('x') }}",
    # Concatenation and arithmetic.
    "{{ secrets.TOKEN ~ '' }}",
    "{{ 'Basic ' ~ secrets.TOKEN }}",
    "{{ secrets.TOKEN + 'x' }}",
    "{{ [secrets.TOKEN] }}",
    "{{ {'a': secrets.TOKEN} }}",
    # Loops, sets, macros, blocks, namespaces.
    "{% for c in secrets.TOKEN %}{{ {}[c] }}{% endfor %}",
    "{% for i in range(2) %}{{ secrets.TOKEN }}{% endfor %}",
    "{% set x = secrets.TOKEN %}{{ {}[x] }}",
    "{% set x %}{{ secrets.TOKEN }}{% endset %}{{ {}[x] }}",
    "{% macro m(s) %}{{ {}[s] }}{% endmacro %}{{ m(secrets.TOKEN) }}",
    "{% macro m() %}{{ secrets.TOKEN }}{% endmacro %}{{ {}[m()] }}",
    "{% macro m() %}{{ caller() }}{% endmacro %}{% call m() %}{{ secrets.TOKEN }}{% endcall %}",
    "{% filter upper %}{{ secrets.TOKEN }}{% endfilter %}",
    "{% set ns = namespace(v=secrets.TOKEN) %}{{ {}[ns.v] }}",
    "{% with s = secrets.TOKEN %}{{ s }}{% endwith %}",
    "{% with %}{{ secrets.TOKEN }}{% endwith %}",
    "{% autoescape true %}{{ secrets.TOKEN }}{% endautoescape %}",
    "{% for x in [1] recursive %}{{ secrets.TOKEN }}{% endfor %}",
    "{% block b %}{{ secrets.TOKEN }}{% endblock %}{{ {}[self.b()] }}",
    "{{ dict(a=secrets.TOKEN) }}",
    # Aliases of the namespace itself.
    "{{ secrets | attr('TOKEN') }}",
    "{% set s = secrets %}{{ s.TOKEN }}",
    "{{ secrets[input.which] }}",
]

LEGITIMATE = [
    "{{ secrets.TOKEN }}",
    "Bearer {{ secrets.TOKEN }}",
    "{{ secrets['TOKEN'] }}",
    "{{- secrets.TOKEN -}}",
    "{{ secrets.TOKEN }}:{{ secrets['TOKEN'] }} and text",
    "{% if input.x %}Bearer {{ secrets.TOKEN }}{% else %}{{ secrets.TOKEN }}{% endif %}",
]

POLICY = "version: 1\nsecrets:\n  TOKEN:\n    hosts: [127.0.0.1]\n"


@pytest.fixture
def untrusted(tmp_path: Path) -> Any:
    policy = tmp_path / "governance.yaml"
    policy.write_text(POLICY)
    return enforce.validation_context(Governance.load(policy, trusted=False, environ={}))


def _issues(config: dict[str, Any], context: Any) -> list[tuple[Any, ...]]:
    node = {"id": "n", "handler": "http", "dependencies": ["input"],
            "config": {"url": "http://127.0.0.1:1/", "method": "POST", **config}}  # fmt: skip
    definition = {"name": "s", "dag": {"nodes": [{"id": "input", "handler": "input"}, node]}}
    try:
        load_definition(definition, context=context)
    except DefinitionError as exc:
        return [(i.node, i.field, i.code, i.message) for i in exc.issues]
    return []


@pytest.mark.parametrize("template", ATTACKS)
@pytest.mark.parametrize(
    ("field", "wrap"),
    [
        ("config.headers.X-T", lambda t: {"headers": {"X-T": t}}),
        ("config.json.a[0]", lambda t: {"json": {"a": [t]}}),
        ("config.body", lambda t: {"body": t}),
    ],
)
def test_computing_with_a_secret_is_refused(
    template: str, field: str, wrap: Any, untrusted: Any
) -> None:
    assert secret_use(template).computed
    for context in (None, untrusted):
        found = _issues(wrap(template), context)
        assert [(n, f, c) for n, f, c, _ in found] == [("n", field, "secret_field")], found
        assert found[0][3] == INTERPOLATION_ONLY
        assert "{{ secrets.NAME }}" in found[0][3]


@pytest.mark.parametrize("template", LEGITIMATE)
def test_a_direct_interpolation_is_accepted(template: str, untrusted: Any) -> None:
    assert not secret_use(template).computed
    for config in ({"headers": {"A": template}}, {"json": {"a": template}}, {"body": template}):
        assert _issues(config, untrusted) == []


def _context() -> dict[str, Any]:
    return build_context({"x": 1}, {}, secrets={"TOKEN": SECRET})


@pytest.mark.parametrize("template", [*ATTACKS[:3], "{{ secrets.TOKEN ~ nope }}"])
def test_a_failed_render_that_reads_secrets_tells_its_kind_only(template: str) -> None:
    # What a definition stored before the rule would do if it rendered: no message at all.
    with pytest.raises(PermanentNodeError) as info:
        render_value(template, _context())
    message = str(info.value)
    assert "message withheld: the template reads secrets" in message
    assert "no element" not in message and "has no attribute" not in message
    assert str(int(SECRET.encode().hex(), 16)) not in message
    assert SECRET not in message


def test_a_missing_secret_is_named_from_the_source() -> None:
    with pytest.raises(PermanentNodeError) as info:
        render_value("Bearer {{ secrets.NOPE }}", _context())
    assert "UndefinedError" in str(info.value)
    assert "secrets not configured: NOPE" in str(info.value)


def test_the_backstop_knows_integer_encodings() -> None:
    number = int.from_bytes(SECRET.encode(), "big")
    little = int.from_bytes(SECRET.encode(), "little")
    text = f"no element {number}; {number:x}; 0x{number:X}; {little}; {SECRET.encode().hex()}"
    scrubbed = Scrubber([SECRET]).text(text)
    assert scrubbed == "no element ***; ***; 0x***; ***; ***"


@pytest.mark.parametrize("padding", [90, 100, 101])
def test_the_output_limit_does_not_depend_on_a_secret_length(padding: int) -> None:
    # Padding a template up to the limit must not tell how long an interpolated secret is.
    from orchestrion.templates.rendering import TemplateLimits, template_limits

    outcomes = set()
    for secret in ("abcd", "a-much-longer-secret-value-" * 20):
        context = build_context({}, {}, secrets={"TOKEN": secret})
        for template in (
            "x" * padding + "{{ secrets.TOKEN }}",
            "{{ secrets['TOKEN'] }}" + "y" * padding,
        ):
            with template_limits(TemplateLimits(max_output_bytes=100)):
                try:
                    rendered = render_value(template, context)
                except PermanentNodeError as exc:
                    outcomes.add(("failed", padding > 100, type(exc).__name__))
                else:
                    assert secret in rendered
                    outcomes.add(("rendered", padding > 100, ""))
    assert len(outcomes) == 1, outcomes
