"""Format operations in templates are priced from the spec they really use: a nested
replacement field (``{0:{1}}``) is counted as the text it puts into the spec, whatever its
type, so a width given as a string, a float or a bool cannot build a huge text; the
siblings (``%`` with ``*`` and mappings, ``|format``, large precisions, ``{:,}``) too."""

from __future__ import annotations

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
NESTED = "a nested format field"
GENEROUS = TemplateLimits(timeout_seconds=10.0, max_output_bytes=1024 * 1024)
FAST = 1.0  # seconds; the formats below would take many seconds and gigabytes if they ran


@pytest.fixture
def ctx() -> dict[str, Any]:
    return build_context({"w": ">999999999", "n": 999_999_999}, {})


@pytest.mark.parametrize(
    ("template", "limit"),
    [
        # a nested width given as a string
        ("{{ '{a:{b}}'.format_map({'a': 1, 'b': '>999999999'}) }}", SIZE),
        ("{{ '{0:{1}}'.format(1, '>999999999') }}", SIZE),
        ("{{ '{:{}}'.format(1, '>999999999') }}", SIZE),
        ("{{ '{a:{b}}'.format(a=1, b='^999999999') }}", SIZE),
        ("{{ '{a:{b}}'.format(a='x', b='<99999999') }}", SIZE),
        ("{{ '{0:{1}}'.format(1, input.w) }}", SIZE),
        ("{{ '{a:x{b}}'.format(a=1, b='>9999999') }}", SIZE),
        ("{{ '{0:{1}{2}}'.format(1, '>', 999999999) }}", SIZE),
        ("{{ '{0:{1}{2}}'.format(1, '>9999', '99999') }}", SIZE),
        ("{{ '{:{}{}}'.format(1, '>99999', '9999') }}", SIZE),
        # a nested precision, a string or a number
        ("{{ '{0:.{1}f}'.format(1.5, 999999999) }}", SIZE),
        ("{{ '{0:.{1}}'.format(1.5, '999999999f') }}", SIZE),
        ("{{ '{0:{1}}'.format(1.5, '.999999999f') }}", SIZE),
        # a nested width given as a float or a bool, or through a conversion
        ("{{ '{:>{w}}'.format(1, w=1e9) }}", SIZE),
        ("{{ '{:>{w}}'.format(1, w=999999999.0) }}", SIZE),
        ("{{ '{0:{1!s}}'.format(1, '>999999999') }}", SIZE),
        ("{{ '{0:{1:>999999999}}'.format(1, 2) }}", SIZE),
        # a nested field that is not a plain argument, or not a short text or number
        ("{{ '{0:{1[0]}}'.format(1, ['>999999999']) }}", "not a lookup"),
        ("{{ '{0:{w.real}}'.format(1, w=999999999) }}", "not a lookup"),
        ("{{ '{0:{1}}'.format(1, ['>9']) }}", NESTED),
        ("{{ '{0:{1}}'.format(1, '>' ~ '9' * 100) }}", NESTED),
        # direct widths and precisions
        ("{{ '{:.999999999f}'.format(1.5) }}", SIZE),
        ("{{ '{:>999999999}'.format(1) }}", SIZE),
        ("{{ '{0:0999999999}'.format(1) }}", SIZE),
        # %-formatting: widths, '*', mappings, precisions
        ("{{ '%.999999999f' % 1.5 }}", SIZE),
        ("{{ '%0999999999d' % 1 }}", SIZE),
        ("{{ '%*d' % (999999999, 1) }}", SIZE),
        ("{{ '%.*f' % (999999999, 1.5) }}", SIZE),
        ("{{ '%*d' % (input.n, 1) }}", SIZE),
        ("{{ '%(a)999999999s' % {'a': 1} }}", SIZE),
        ("{{ '%(a)-999999999s' % {'a': 1} }}", SIZE),
        ("{{ '%.999999999s' | format(1) }}", SIZE),
        ("{{ '%999999999s' | format('x') }}", SIZE),
        ("{{ '%(a)999999999s' | format(a=1) }}", SIZE),
        ("{{ '%*s' | format(999999999, 'x') }}", SIZE),
    ],
)
def test_format_bombs_are_refused_before_they_run(
    template: str, limit: str, ctx: dict[str, Any]
) -> None:
    started = time.monotonic()
    with template_limits(GENEROUS), pytest.raises(PermanentNodeError) as info:
        render_value(template, ctx)
    elapsed = time.monotonic() - started
    assert info.value.category == "template"
    assert limit in str(info.value), str(info.value)
    assert elapsed < FAST, (template, elapsed)


@pytest.mark.parametrize(
    "template",
    [
        "{{ '{0.__class__}'.format(1) }}",
        "{{ '{0:{1.__class__}}'.format(1, 2) }}",
    ],
)
def test_attribute_lookups_in_formats_stay_refused(template: str, ctx: dict[str, Any]) -> None:
    with template_limits(GENEROUS), pytest.raises(PermanentNodeError):
        render_value(template, ctx)


def test_huge_integers_with_separators_stay_within_the_integer_limit(
    ctx: dict[str, Any],
) -> None:
    # The largest integer a template may build, with separators: about 5,700 characters.
    with template_limits(GENEROUS):
        text = render_value("{{ '{:,}'.format(10 ** 4299) }}", ctx)
    assert isinstance(text, str) and len(text) < 6000


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ '{0:{1}}'.format(1, '>5') }}", "    1"),
        ("{{ '{a:{b}}'.format_map({'a': 1, 'b': '>5'}) }}", "    1"),
        ("{{ '{:{}}'.format('x', 4) }}", "x   "),
        ("{{ '{:{}{}}'.format(7, '0>', 3) }}", "007"),
        ("{{ '{0:.{1}f}'.format(3.14159, 2) }}", "3.14"),
        ("{{ '{:{align}{width}}'.format('x', align='^', width=5) }}", "  x  "),
        ("{{ '{0:{1}}|{2}'.format('a', 3, 'b') }}", "a  |b"),
        ("{{ '{:,}'.format(1234567) }}", "1,234,567"),
        ("{{ '%*d' % (4, 7) }}", "   7"),
        ("{{ '%(a)5s' % {'a': 'x'} }}", "    x"),
        ("{{ '%.2f' | format(3.14159) }}", "3.14"),
    ],
)
def test_ordinary_formats_render_as_before(
    template: str, expected: str, ctx: dict[str, Any]
) -> None:
    assert render_value(template, ctx) == expected


@pytest.mark.parametrize(
    "template",
    [
        "{{ '{0:{2}}'.format(1, 2) }}",  # a missing argument
        "{{ '{0:{w}}'.format(1) }}",
        "{{ '{0:{1}}'.format(1, '>5q') }}",  # an invalid spec
        "{{ '{:>{w}}'.format(1, w=True) }}",
    ],
)
def test_broken_formats_fail_as_before(template: str, ctx: dict[str, Any]) -> None:
    with pytest.raises(PermanentNodeError) as info:
        render_value(template, ctx)
    assert info.value.category == "template"
