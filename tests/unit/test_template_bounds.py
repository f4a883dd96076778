"""Template bounds (templates/bounds.py): every operation that could compute or allocate
without limit is refused before it runs, fast, with a message naming the limit; ordinary
templates still render as before."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from orchestrion.errors import PermanentNodeError
from orchestrion.templates.rendering import (
    TemplateLimits,
    build_context,
    render_value,
    template_limits,
)

SIZE = "templates.max_output_bytes"
INTEGER = "4300 digits (the template integer limit)"
DEPTH = "100 levels deep (the template depth limit)"
SLOW = "characters, got"  # the input bound of the pure-Python filters

# A generous time limit: a bomb must be refused by its price, long before the clock.
GENEROUS = TemplateLimits(timeout_seconds=10.0, max_output_bytes=1024 * 1024)
FAST = 1.0  # seconds; a bomb that ran would take far longer (or exhaust memory)


@pytest.fixture
def ctx() -> dict[str, Any]:
    return build_context(
        {
            "s": "x" * 900_000,
            "lines": "a\n" * 200_000,
            "parts": [["x" * 600_000], ["y" * 600_000]],
            "many": list(range(200_000)),
        },
        {"fetch": {"items": list(range(100)), "text": "hello world"}},
    )


def _refused(template: str, context: dict[str, Any]) -> str:
    started = time.monotonic()
    with template_limits(GENEROUS), pytest.raises(PermanentNodeError) as info:
        render_value(template, context)
    elapsed = time.monotonic() - started
    assert info.value.category == "template"
    message = str(info.value)
    assert "templates.timeout_seconds" not in message, message
    assert elapsed < FAST, (template, elapsed)
    return message


BOMBS: list[tuple[str, str]] = [
    # integers: operands and results of *, **, +, int(), to_bytes
    ("{{ ((9**9999)**999) is number }}", INTEGER),
    ("{{ 9 ** 9999 }}", INTEGER),
    ("{{ 10 ** 4400 }}", INTEGER),
    ("{{ (-7) ** 100000 }}", INTEGER),
    ("{{ (2**14000) * (2**14000) }}", INTEGER),
    ("{{ (2**4000) * (2**4000) * (2**4000) * (2**4000) }}", INTEGER),
    (
        "{% set ns = namespace(x=3) %}{% for i in range(40) %}{% set ns.x = ns.x * ns.x %}"
        "{% endfor %}",
        INTEGER,
    ),
    ("{{ ('1' * 100000) | int(base=2) }}", INTEGER),
    ("{{ ('9' * 100000) | int }}", INTEGER),
    ("{{ 5 | round(-1000000) }}", INTEGER),
    ("{{ 5.5 | round(1000000, 'floor') }}", INTEGER),
    ("{{ (1).to_bytes(10**9, 'big') }}", SIZE),
    # repetition, concatenation and literals, nested
    ("{{ [['a'*1000]*100]*100 }}", SIZE),
    ("x{{ [['a'*1000]*100]*100 }}", SIZE),
    ("{{ 'a' * 100000000 }}", SIZE),
    ("{{ [0] * 100000000 }}", SIZE),
    ("{{ (0,) * 100000000 }}", SIZE),
    ("{{ ('a' * 1000).encode() * 10000 }}", SIZE),
    ("{% set a = 'a' * 500000 %}{{ [a, a, a] }}", SIZE),
    ("{% set a = 'a' * 500000 %}{{ (a, a, a) }}", SIZE),
    ("{% set a = 'a' * 500000 %}{{ {'x': a, 'y': a, 'z': a} }}", SIZE),
    ("{% set a = ['a' * 1000] * 500 %}{% set b = [a, a, a, a] %}{{ b }}", SIZE),
    ("{% set a = 'a' * 600000 %}{{ a ~ a }}", SIZE),
    ("{% set a = 'a' * 600000 %}{{ a + a }}", SIZE),
    ("{% set a = ['a' * 1000] * 600 %}{{ a + a }}", SIZE),
    ("{{ [input.s, input.s] }}", SIZE),
    ("{{ input.s ~ input.s }}", SIZE),
    ("{{ dict(a=['a' * 1000] * 500, b=['a' * 1000] * 600) }}", SIZE),
    (
        "{% set ns = namespace(x='ab') %}{% for i in range(30) %}{% set ns.x = ns.x ~ ns.x %}"
        "{% endfor %}",
        SIZE,
    ),
    (
        "{% set ns = namespace(x=[1]) %}{% for i in range(40) %}{% set ns.x = ns.x + ns.x %}"
        "{% endfor %}",
        SIZE,
    ),
    (
        "{% set ns = namespace(x=[]) %}{% for i in range(200) %}{% set ns.x = [ns.x] %}"
        "{% endfor %}",
        DEPTH,
    ),
    # text produced in all, through buffers (set blocks, macros, loops)
    (
        "{% macro m() %}{{ 'a' * 900000 }}{% endmacro %}"
        "{% for i in range(100) %}{% set x = m() %}{% endfor %}",
        "8 x " + SIZE,
    ),
    (
        "{% set x %}{% for i in range(10000) %}{{ 'a' * 1000 }}{% endfor %}{% endset %}",
        "8 x " + SIZE,
    ),
    (
        "{% set x %}{% for i in range(10000) %}" + "y" * 1000 + "{% endfor %}{% endset %}",
        "8 x " + SIZE,
    ),
    (
        "{% macro m(n) %}{% if n %}{{ m(n - 1) }}{{ m(n - 1) }}{% else %}{{ 'a' * 1000 }}"
        "{% endif %}{% endmacro %}{{ m(30) }}",
        SIZE,
    ),
    # string methods and formats
    ("{{ 'a'.ljust(10**9) }}", SIZE),
    ("{{ 'a'.encode().center(10**9) }}", SIZE),
    ("{{ ('a' * 100000).replace('a', 'a' * 100000) }}", SIZE),
    ("{{ ('a' * 1000).translate({97: 'b' * 10000}) }}", SIZE),
    ("{{ ','.join(['a' * 100000] * 11) }}", SIZE),
    ("{{ ','.join(range(10000) | map('center', 1000)) }}", SIZE),
    ("{{ input.s.split('x') }}", SIZE),
    ("{{ '%*d' % (10**8, 1) }}", SIZE),
    ("{{ '%0999999999d' % 1 }}", SIZE),
    ("{{ '%s%s%s%s%s%s' % (input.s, input.s, input.s, input.s, input.s, input.s) }}", SIZE),
    ("{{ '{:{}}'.format(1, 10**8) }}", SIZE),
    ("{{ '{:>999999999}'.format(1) }}", SIZE),
    ("{{ '{0}{0}{0}{0}{0}{0}'.format(input.s) }}", SIZE),
    ("{{ '{a}{a}{a}'.format_map({'a': input.s}) }}", SIZE),
    ("{{ '%s%s' | format(input.s, input.s) }}", SIZE),
    # filters that grow or copy
    ("{{ range(10000) | map('center', 100000) | join }}", SIZE),
    ("{{ range(10000) | map('center', 100000) | list | length }}", SIZE),
    ("{{ range(10000) | map('center', 100000) }}", SIZE),
    ("{{ range(10000) | map('center', 100000) | sort | first }}", SIZE),
    ("{{ input.s | list | length }}", SIZE),
    ("{{ [1] | batch(10**9, fill_with=0) | list }}", SIZE),
    ("{{ [1] | slice(10**9) | list }}", SIZE),
    ("{{ [1, 2] | slice(2, fill_with='x' * 1000000) | list }}", SIZE),
    ("{{ input.parts | sum(start=[]) }}", SIZE),
    ("{{ ([['a' * 1000] * 600] * 2) | sum(start=[]) }}", SIZE),
    ("{{ {'a': [[[1] * 10] * 10] * 10} | tojson(indent=100000) }}", SIZE),
    ("{{ (['a' * 1000] * 900) | tojson(indent=1000) }}", SIZE),
    ("{{ 'a' | center(10**9) }}", SIZE),
    ("{{ 'a' | indent(10**7) }}", SIZE),
    ("{{ input.lines | indent(100) }}", SIZE),
    ("{{ ('a\n' * 1000) | indent('x' * 10000) }}", SIZE),
    ("{{ ('a ' * 10000) | wordwrap(1, wrapstring='x' * 1000) }}", SIZE),
    ("{{ (input.s ~ '') | replace('x', 'yy') }}", SIZE),
    ("{{ input.s | wordwrap(5) }}", SLOW),
    ("{{ input.s | urlize }}", SLOW),
    ("{{ input.s | title }}", SLOW),
    ("{{ input.s | urlencode }}", SLOW),
    ("{{ ('<a>' * 200000) | striptags }}", SLOW),
    ("{{ input.many | sort | first }}", "at most 100000 items"),
    ("{{ input.many | unique | list | length }}", "at most 100000 items"),
    ("{{ input.many | max }}", "at most 100000 items"),
    ("{{ input.many | groupby('x') | list }}", "at most 100000 items"),
    ("{{ range(10000) | list | pprint }}", "at most 10000 values"),
    ("{{ ([1] * 20000) | pprint }}", "at most 10000 values"),
]


@pytest.mark.parametrize(("template", "limit"), BOMBS, ids=[b[0][:50] for b in BOMBS])
def test_bombs_are_refused_before_they_run(template: str, limit: str, ctx: dict[str, Any]) -> None:
    assert limit in _refused(template, ctx)


def test_the_size_limit_follows_the_policy(ctx: dict[str, Any]) -> None:
    small = TemplateLimits(timeout_seconds=10.0, max_output_bytes=2048)
    with template_limits(small):
        for template in ("{{ ['a' * 100] * 30 }}", "{{ 'a'.ljust(3000) }}", "{{ [1] * 1000 }}"):
            with pytest.raises(PermanentNodeError, match=r"2048 bytes, templates\.max_output"):
                render_value(template, ctx)
        assert render_value("{{ ['a' * 100] * 10 }}", ctx) == ["a" * 100] * 10


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ 2 ** 100 }}", 2**100),
        ("{{ 10 ** 4000 > 0 }}", True),
        ("{{ (10**4000) + (10**4000) - 1 }}", 2 * 10**4000 - 1),
        ("{{ 7 * 6 }}", 42),
        ("{{ 7 // 2 }}|{{ 7 / 2 }}|{{ 7 % 2 }}|{{ 7 - 9 }}", "3|3.5|1|-2"),
        ("{{ 'ab' * 3 }}", "ababab"),
        ("{{ [1, 2] + [3] }}", [1, 2, 3]),
        ("{{ (1, 2) + (3,) }}", [1, 2, 3]),
        ("{{ 'a' ~ 1 ~ none }}", "a1None"),
        ("{{ {'a': [1, {'b': (2, 3)}]} }}", {"a": [1, {"b": (2, 3)}]}),
        ("{% for a, b in [(1, 2), (3, 4)] %}{{ a + b }},{% endfor %}", "3,7,"),
        ("{% set a, b = 1, 2 %}{{ a }}{{ b }}", "12"),
        ("{{ fetch.output.items | sum }}", 4950),
        ("{{ [[1], [2, 3]] | sum(start=[]) }}", [1, 2, 3]),
        ("{{ [(1,), (2,)] | sum(start=()) }}", [1, 2]),
        ("{{ fetch.output.items | map('string') | join(',') | length }}", 289),
        ("{{ fetch.output.items | select('odd') | list | length }}", 50),
        ("{{ range(3) | map('string') | list }}", ["0", "1", "2"]),
        ("{{ range(3) | map('string') }}", ["0", "1", "2"]),
        ("{{ fetch.output.text | title }}", "Hello World"),
        ("{{ fetch.output.text | wordwrap(5) }}", "hello\nworld"),
        ("{{ fetch.output.text | center(15) }}", "  hello world  "),
        ("{{ 'a\nb' | indent(2, first=true) }}", "  a\n  b"),
        ("{{ '<p>a <b>b</b></p><!-- c -->' | striptags }}", "a b"),
        ("{{ {'a': [1, 2]} | tojson(indent=2) }}", '{\n  "a": [\n    1,\n    2\n  ]\n}'),
        ("{{ '%05.1f|%s' % (3.14159, 'x') }}", "003.1|x"),
        ("{{ '{:>5}|{:{}}|{a}'.format('x', 'y', 3, a=1) }}", "    x|y  |1"),
        ("{{ '%s-%s' | format('a', 'b') }}", "a-b"),
        ("{{ [1, 2, 3, 4, 5] | batch(2, fill_with=0) | list }}", [[1, 2], [3, 4], [5, 0]]),
        ("{{ [1, 2, 3] | slice(2) | list }}", [[1, 2], [3]]),
        ("{{ '42' | int }}|{{ '0x1f' | int(base=16) }}|{{ 3.14159 | round(2) }}", "42|31|3.14"),
        ("{{ (2 ** 1000) | string | length }}", 302),
        ("{{ (65).to_bytes(1, 'big') }}", b"A"),
        (
            "{% set ns = namespace(x=[]) %}{% for i in range(1000) %}{% set ns.x = ns.x + [i] %}"
            "{% endfor %}{{ ns.x | length }}",
            "1000",
        ),
        ("{% macro m(x) %}<{{ x }}>{% endmacro %}{{ m(1) ~ m(2) }}", "<1><2>"),
        ("{% set t %}{{ 'a' * 3 }}b{% endset %}{{ t }}", "aaab"),
    ],
)
def test_ordinary_templates_render_as_before(
    template: str, expected: Any, ctx: dict[str, Any]
) -> None:
    result = render_value(template, ctx)
    if isinstance(expected, list) and isinstance(result, list | tuple):
        result = [list(r) if isinstance(r, tuple) else r for r in result]
    assert result == expected


def test_reading_a_large_value_is_not_limited() -> None:
    big = {"items": ["x" * 100] * 50_000}  # 5 MB as text, read not built
    ctx = build_context({}, {"fetch": big})
    assert render_value("{{ fetch.output.items | length }}", ctx) == 50_000
    assert render_value("{{ fetch.output.items[0] }}", ctx) == "x" * 100
    assert render_value("{{ fetch.output.items | select('eq', 'y') | list }}", ctx) == []
    assert render_value("{{ fetch.output.items }}", ctx) is big["items"]


def test_nothing_is_computed_at_compile_time() -> None:
    # Constant folding would evaluate these when the template is compiled, outside every
    # limit; they are evaluated (and refused) when rendered.
    from orchestrion.templates import sandbox as template_sandbox

    for source in ("{{ 'a' | center(999999999) }}", "{{ 'x' ~ ('a' * 10**8) }}"):
        started = time.monotonic()
        template_sandbox._compiled_template(source)
        assert time.monotonic() - started < FAST
        with pytest.raises(PermanentNodeError):
            render_value(source, build_context({}, {}))


def test_a_lazy_result_is_collected_within_the_limit() -> None:
    ctx = build_context({}, {})
    assert render_value("{{ range(3) | map('string') }}", ctx) == ["0", "1", "2"]
    with pytest.raises(PermanentNodeError, match=re.escape(SIZE)):
        render_value("{{ range(10000) | map('center', 200) }}", ctx)
