"""Templates: native values, strict undefined, the input namespace, secrets and the sandbox."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrion.errors import PermanentNodeError
from orchestrion.templates.rendering import (
    MAX_RANGE,
    build_context,
    condition_references,
    evaluate_condition,
    is_template,
    node_expression,
    render_value,
    template_errors,
    template_info,
    template_references,
)

SECRET = "s3cr3t-value-xyz"


@pytest.fixture
def ctx() -> dict[str, Any]:
    return build_context(
        {"user_id": 123, "tags": ["a", "b"]},
        {
            "input": {"user_id": 7},
            "fetch": {"response": "ok", "items": [1, 2, 3], "nested": {"path": {"x": 1.5}}},
            "get-posts": {"data": ["p1", "p2"]},
        },
        secrets={"TOKEN": SECRET},
        execution={"id": "exec-1", "attempt": 2, "node": "n"},
    )


def _fails(value: Any, context: dict[str, Any]) -> PermanentNodeError:
    with pytest.raises(PermanentNodeError) as info:
        render_value(value, context)
    assert info.value.category == "template"
    return info.value


# ---------------------------------------------------------------- native types and text


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ fetch.output.items }}", [1, 2, 3]),
        ("  {{ fetch.output.items }}  ", [1, 2, 3]),
        ("{{- fetch.output.items -}}", [1, 2, 3]),
        ("{{ fetch.output.nested.path.x }}", 1.5),
        ("{{ fetch.output.nested }}", {"path": {"x": 1.5}}),
        ("{{ input.user_id }}", 123),
        ("{{ input.user_id > 100 }}", True),
        ("{{ input.tags | length }}", 2),
        ("{{ fetch.output.missing_or | default('d') }}", "d"),
        ("{{ 'text' }}", "text"),
        ("{{ none }}", None),
    ],
)
def test_single_expression_keeps_native_type(
    template: str, expected: Any, ctx: dict[str, Any]
) -> None:
    assert render_value(template, ctx) == expected


def test_mixed_text_renders_to_string(ctx: dict[str, Any]) -> None:
    assert render_value("user {{ input.user_id }} has {{ input.tags|length }}", ctx) == (
        "user 123 has 2"
    )
    assert render_value("{{ input.user_id }}{{ input.user_id }}", ctx) == "123123"


def test_render_walks_dicts_and_lists(ctx: dict[str, Any]) -> None:
    value = {"a": ["{{ input.user_id }}", {"b": "x{{ execution.attempt }}"}], "c": 5, "d": None}
    assert render_value(value, ctx) == {"a": [123, {"b": "x2"}], "c": 5, "d": None}


def test_plain_strings_are_untouched(ctx: dict[str, Any]) -> None:
    assert render_value("no templates here {", ctx) == "no templates here {"


def test_mapping_keys_win_over_methods(ctx: dict[str, Any]) -> None:
    # `items` of an HTTP response is data, not dict.items
    assert render_value("{{ fetch.output.items }}", ctx) == [1, 2, 3]
    loop = "{% for k, v in fetch.output.nested.items() %}{{ k }}{% endfor %}"
    assert render_value(loop, ctx) == "path"


def test_tojson_and_fromjson(ctx: dict[str, Any]) -> None:
    assert render_value("{{ fetch.output.items | tojson }}", ctx) == "[1, 2, 3]"
    assert render_value("{{ '{\"a\": [1]}' | fromjson }}", ctx) == {"a": [1]}
    assert render_value("{{ input | tojson }}", ctx) == '{"user_id": 123, "tags": ["a", "b"]}'


# ---------------------------------------------------------------- the names templates see


def test_input_namespace_and_input_node(ctx: dict[str, Any]) -> None:
    assert render_value("{{ input.user_id }}", ctx) == 123
    assert render_value("{{ input['user_id'] }}", ctx) == 123
    assert render_value("{{ input.output.user_id }}", ctx) == 7
    assert render_value("{{ input.output['user_id'] }}", ctx) == 7


def test_input_output_without_input_node_is_a_param() -> None:
    context = build_context({"output": "param"}, {})
    assert render_value("{{ input.output }}", context) == "param"


def test_nodes_mapping_reaches_hyphenated_ids(ctx: dict[str, Any]) -> None:
    assert render_value("{{ nodes['get-posts'].output.data }}", ctx) == ["p1", "p2"]
    assert render_value("{{ nodes.fetch.output.response }}", ctx) == "ok"
    assert render_value("{{ nodes['fetch']['output']['response'] }}", ctx) == "ok"


def test_execution_values(ctx: dict[str, Any]) -> None:
    assert render_value("{{ execution.id }}/{{ execution.attempt }}", ctx) == "exec-1/2"


def test_node_expression_builds_safe_references() -> None:
    assert node_expression("fetch", "a.b") == "fetch.output.a.b"
    assert node_expression("get-posts") == "nodes['get-posts'].output"
    assert node_expression("input", "user_id") == "input.output.user_id"
    assert node_expression("execution") == "nodes['execution'].output"
    assert node_expression("x", "with-dash") == "x.output['with-dash']"


# ---------------------------------------------------------------- strict undefined


@pytest.mark.parametrize(
    ("template", "fragment"),
    [
        ("{{ fetch.output.missing }}", "'dict object' has no attribute 'missing'"),
        ("{{ nope.output }}", "'nope' is undefined"),
        ("value: {{ nope }}", "'nope' is undefined"),
        ("{{ input.not_given }}", "workflow input 'not_given' was not provided"),
        ("{{ fetch.status }}", "node 'fetch' exposes only '.output'"),
        ("{{ nodes['ghost'].output }}", "no output of node 'ghost'"),
        ("{{ fetch.output.items[10] }}", "no element 10"),
    ],
)
def test_missing_things_are_errors_that_name_them(
    template: str, fragment: str, ctx: dict[str, Any]
) -> None:
    error = _fails(template, ctx)
    assert fragment in str(error)
    assert f"template error in '{template}'" in str(error)


def test_exact_message_for_missing_attribute(ctx: dict[str, Any]) -> None:
    error = _fails("{{ fetch.output.missing }}", ctx)
    assert str(error) == (
        "template error in '{{ fetch.output.missing }}': 'dict object' has no attribute 'missing'"
    )


def test_syntax_error_at_render_is_a_template_error(ctx: dict[str, Any]) -> None:
    assert "syntax error" in str(_fails("{{ fetch.output. }}", ctx))


# ---------------------------------------------------------------- secrets


def test_secret_renders_where_asked(ctx: dict[str, Any]) -> None:
    assert render_value("Bearer {{ secrets.TOKEN }}", ctx) == f"Bearer {SECRET}"


def test_missing_secret_names_it(ctx: dict[str, Any]) -> None:
    assert "secrets not configured: MISSING" in str(_fails("{{ secrets.MISSING }}", ctx))


@pytest.mark.parametrize(
    "template",
    [
        "{{ secrets }}",
        "{{ secrets | list }}",
        "{{ secrets | tojson }}",
        "{{ secrets.TOKEN + 1 }}",
        "{{ secrets.TOKEN.nothing }}",
        "{{ secrets.TOKEN | fromjson }}",
        "{{ secrets.TOKEN ~ undefined_name }}",
        "{{ secrets.items() }}",
    ],
)
def test_secret_values_never_appear_in_errors(template: str, ctx: dict[str, Any]) -> None:
    error = _fails(template, ctx)
    assert SECRET not in str(error)
    assert SECRET not in repr(error.args)


def test_secrets_are_not_listable(ctx: dict[str, Any]) -> None:
    assert repr(ctx["secrets"]) == "<secrets>"


# ---------------------------------------------------------------- sandbox and limits


@pytest.mark.parametrize(
    "template",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ fetch.output.__class__ }}",
        "{{ fetch.__init__.__globals__ }}",
        "{{ input._params }}",
        "{{ cycler.__init__.__globals__.os }}",
        "{{ lipsum.__globals__ }}",
        "{{ range.__globals__ }}",
        "{% set x = fetch.output.update({'a': 1}) %}",
    ],
)
def test_sandbox_blocks_escapes(template: str, ctx: dict[str, Any]) -> None:
    _fails(template, ctx)


def test_mutation_is_refused(ctx: dict[str, Any]) -> None:
    _fails("{{ fetch.output.items.append(4) }}", ctx)
    assert render_value("{{ fetch.output.items }}", ctx) == [1, 2, 3]


def test_range_is_capped(ctx: dict[str, Any]) -> None:
    assert render_value(f"{{{{ range({MAX_RANGE}) | length }}}}", ctx) == MAX_RANGE
    assert "range() is limited" in str(_fails(f"{{{{ range({MAX_RANGE + 1}) }}}}", ctx))


def test_nested_range_loops_share_a_budget(ctx: dict[str, Any]) -> None:
    bomb = "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"
    assert "range items" in str(_fails(bomb, ctx))
    reused = "{% set r = range(10000) %}{% for i in r %}{% for j in r %}{% endfor %}{% endfor %}"
    _fails(reused, ctx)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 100000000 }}",
        "{{ [1] * 100000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ '%0999999999d' % 1 }}",
        "{{ '{:>999999999}'.format(1) }}",
        "{{ 'a' | center(999999999) }}",
        "{% for i in range(10000) %}{{ 'x' * 1000 }}{% endfor %}",
    ],
)
def test_size_bombs_are_refused(template: str, ctx: dict[str, Any]) -> None:
    _fails(template, ctx)


def test_lipsum_is_not_available(ctx: dict[str, Any]) -> None:
    assert "'lipsum' is undefined" in str(_fails("{{ lipsum(1000) }}", ctx))


# ---------------------------------------------------------------- conditions


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("input.user_id > 100", True),
        ("{{ input.user_id > 1000 }}", False),
        ("fetch.output.response == 'ok'", True),
        ("fetch.output.items | length == 3", True),
        ("{{ fetch.output.items }}", True),
        ("{{ [] }}", False),
        ("{{ input.user_id }} is big", True),
        ("{% if false %}yes{% endif %}", False),
        ("{{ 'false' }}", False),
    ],
)
def test_evaluate_condition(expr: str, expected: bool, ctx: dict[str, Any]) -> None:
    assert evaluate_condition(expr, ctx) is expected


def test_condition_with_missing_name_is_an_error(ctx: dict[str, Any]) -> None:
    with pytest.raises(PermanentNodeError, match="'ghost' is undefined"):
        evaluate_condition("ghost.output > 1", ctx)


# ---------------------------------------------------------------- static analysis


def test_is_template() -> None:
    assert is_template("{{ x }}")
    assert is_template("{% if x %}y{% endif %}")
    assert not is_template("plain {x}")
    assert not is_template(5)


def test_template_references_walks_values() -> None:
    value = {
        "url": "http://x/{{ input.user_id }}",
        "body": ["{{ fetch.output }}", {"deep": "{{ nodes['a-b'].output }}"}],
        "n": 3,
        "plain": "no",
    }
    assert template_references(value) == {"input", "fetch", "nodes"}
    assert template_references("{% for x in items.output %}{{ x }}{% endfor %}") == {"items"}
    assert template_references("{{ range(3) | list }}") == set()


def test_condition_references_accept_bare_expressions() -> None:
    assert condition_references("fetch.output.ok and input.x") == {"fetch", "input"}
    assert condition_references("{{ a.output }}") == {"a"}
    assert condition_references(None) == set()


def test_template_info_finds_node_keys_and_input_output() -> None:
    info = template_info("{{ nodes['a-b'].output }} {{ nodes.c.output }} {{ input.output.x }}")
    assert info.node_keys == {"a-b", "c"}
    assert info.input_output
    assert not info.dynamic_nodes
    assert template_info("{{ nodes[name].output }}").dynamic_nodes


def test_template_errors_name_the_field() -> None:
    errors = template_errors({"url": "{{ x", "list": ["ok", "{% if %}"]})
    assert [path for path, _ in errors] == ["config.url", "config.list[1]"]
    assert all("template syntax error" in message for _, message in errors)
    assert template_errors({"fine": "{{ x }}"}) == []


def test_limits_in_force_bound_time_and_size() -> None:
    import time

    from orchestrion.templates.rendering import TemplateLimits, template_limits

    ctx = build_context({"big": list(range(3000))}, {})
    loops = "{% for a in input.big %}{% for b in input.big %}{% endfor %}{% endfor %}"
    macro = "{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
    with template_limits(TemplateLimits(timeout_seconds=0.2, max_output_bytes=2000)):
        for bomb in (loops, macro + "{{ f(50) }}"):
            started = time.monotonic()
            error = _fails(bomb, ctx)
            assert "longer than 0.2s (templates.timeout_seconds)" in str(error)
            assert time.monotonic() - started < 1.0
        assert "templates.max_output_bytes" in str(_fails("{{ 'é' * 1500 }}", ctx))
        long_text = "{% for i in range(300) %}0123456789{% endfor %}"
        assert "exceeds 2000 bytes" in str(_fails(long_text, ctx))
        assert render_value("{% for i in range(100) %}0123456789{% endfor %}", ctx)
    # Outside the block, the defaults hold again.
    assert len(render_value("{% for i in range(300) %}0123456789{% endfor %}", ctx)) == 3000


def test_recursion_is_a_clear_template_error() -> None:
    error = _fails("{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}", build_context({}, {}))
    assert "recursion too deep" in str(error)


@pytest.mark.parametrize(
    "bomb",
    [
        "{{ 'a'.ljust(10**9) }}",
        "{{ 'a'.zfill(10**9) }}",
        "{{ 'a'.center(10**9) }}",
        "{{ ('\t' * 1000).expandtabs(10**6) }}",
        "{{ ('a' * 100000).replace('a', 'a' * 100000) }}",
        "{{ ('a' * 1000).replace('', 'b' * 100000) }}",
        "{{ ('a' * 100000) | replace('a', 'a' * 100000) }}",
        "{{ ','.join(['a' * 100000] * 11) }}",
    ],
)
def test_str_methods_that_grow_are_refused_before_they_allocate(bomb: str) -> None:
    error = _fails(bomb, build_context({}, {}))
    assert "would exceed the template size limit" in str(error)


def test_ordinary_str_methods_still_work() -> None:
    ctx = build_context({}, {})
    assert render_value("{{ 'a b'.replace(' ', '-') }}", ctx) == "a-b"
    assert render_value("{{ 'a b a' | replace('a', 'x', 1) }}", ctx) == "x b a"
    assert render_value("{{ '-'.join(['x', 'y']) }}|{{ 'a'.ljust(3) }}|", ctx) == "x-y|a  |"


@pytest.mark.parametrize(
    "template",
    [
        "{{ fetch.output }}",
        "{{ fetch.output.items }}",
        "{{ fetch.output.nested.path.x }}",
        "{{ fetch.output.nested.path }}",
        "{{ fetch.output.missing }}",
        "{{ fetch.output.items.count }}",
        "{{ fetch.output.response.upper }}",
        "{{ ghost.output }}",
        "{{ fetch.outputs }}",
    ],
)
def test_a_plain_output_path_reads_what_the_sandbox_reads(
    template: str, ctx: dict[str, Any]
) -> None:
    """Plain ``node.output.a.b`` references are read without the sandbox (the commonest
    template, rendered once per node): the value, or the error, is the sandbox's own."""
    from orchestrion.templates import rendering as templates

    def rendered() -> Any:
        try:
            return render_value(template, ctx)
        except PermanentNodeError as exc:
            return str(exc)

    fast = rendered()
    original = templates._output_path
    templates._output_path = lambda expr: None  # type: ignore[assignment]
    try:
        slow = rendered()
    finally:
        templates._output_path = original
    assert repr(fast) == repr(slow)


@pytest.mark.parametrize(
    "source",
    [
        "{{ a.output }}",
        "{{ nodes.x.output }}",
        "{{ input.output.x }}",
        "{{ input.x }}",
        "{{ a }}",
        "{{- a.output.b -}}",
        "  {{ fetch.output.items }} ",
        "{{ nodes }}",
        "{{ input.output }}",
        "{{ none }}",
        "{{ true }}",
        "{{ loop.index }}",
        "{{ a.output.if }}",
        "{{ a.output.b }}{{ c }}",
        "{{ a.output['b'] }}",
        "{{ a.output.b | upper }}",
    ],
)
def test_a_plain_reference_is_analysed_as_jinja_would(source: str) -> None:
    """Plain ``{{ node.output.a }}`` references skip Jinja's analysis (thousands of them in
    a large definition): the result is the same."""
    from orchestrion.templates import sandbox as template_sandbox

    assert template_info(source) == template_sandbox.analyse(source)
