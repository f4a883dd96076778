"""Reads of ``secrets`` are found on the template's syntax tree, however the value is used."""

from __future__ import annotations

import pytest

from orchestrion.templates.secrets import SecretUse, secret_use


@pytest.mark.parametrize(
    ("source", "names"),
    [
        ("{{ secrets.TOKEN }}", {"TOKEN"}),
        ("Bearer {{ secrets.TOKEN }}", {"TOKEN"}),
        ("{{ secrets['TOKEN'] }}", {"TOKEN"}),
        ("{{ secrets.TOKEN | reverse }}", {"TOKEN"}),
        ("{{ secrets.TOKEN | lower | replace('a', 'b') }}", {"TOKEN"}),
        ("{{ secrets.TOKEN[::-1] }}", {"TOKEN"}),
        ("{{ secrets.TOKEN[1:] ~ secrets.OTHER }}", {"TOKEN", "OTHER"}),
        ("{% set s = secrets.TOKEN %}{{ s }}", {"TOKEN"}),
        ("{% for c in secrets.TOKEN %}{{ c }}{% endfor %}", {"TOKEN"}),
        ("{{ (secrets.TOKEN | list) | join(',') }}", {"TOKEN"}),
        ("{{ secrets.TOKEN if input.x else '' }}", {"TOKEN"}),
        ("{{\n  secrets\n  .TOKEN }}", {"TOKEN"}),
    ],
)
def test_named_reads(source: str, names: set[str]) -> None:
    use = secret_use(source)
    assert (use.reads, use.names, use.aliased) == (True, frozenset(names), False)
    interpolated = "|" not in source and "[:" not in source and "[1" not in source
    interpolated = interpolated and "{%" not in source and " if " not in source
    assert use == SecretUse(True, frozenset(names), False, computed=not interpolated)


@pytest.mark.parametrize(
    "source",
    [
        "{{ secrets }}",
        "{{ secrets | attr('TOKEN') }}",
        "{{ secrets[input.name] }}",
        "{{ secrets[0] }}",
        "{% set s = secrets %}{{ s.TOKEN }}",
        "{% with s = secrets %}{{ s.TOKEN }}{% endwith %}",
        "{{ [secrets][0].TOKEN }}",
        "{{ dict(a=secrets).a.TOKEN }}",
        "{{ namespace(a=secrets).a.TOKEN }}",
        "{% macro m(s) %}{{ s.TOKEN }}{% endmacro %}{{ m(secrets) }}",
        "{% for k in secrets %}{{ k }}{% endfor %}",
        "{{ secrets | tojson }}",
        "{% set secrets = input %}{{ secrets.x }}",
        "{{ (secrets).TOKEN.x | default(secrets) }}",
    ],
)
def test_aliased_reads(source: str) -> None:
    use = secret_use(source)
    assert use.reads and use.aliased and use.computed


@pytest.mark.parametrize(
    "source",
    [
        "{{ input.secrets }}",  # an attribute called secrets is not the namespace
        "{{ node.output.secrets }}",
        "{{ 'secrets' }}",
        "no template secrets here",
        "{{ \uff53ecrets.TOKEN }}",  # fullwidth: another name (undefined when rendered)
        "{% raw %}{{ secrets.TOKEN }}{% endraw %}",  # text, not a read
        "{{ broken",
    ],
)
def test_what_is_not_a_read(source: str) -> None:
    assert not secret_use(source).reads
