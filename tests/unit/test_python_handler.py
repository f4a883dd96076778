"""The python handler: function registry, dotted paths, sync/async calls, ctx injection."""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from node_context import node_context
from orchestrion.errors import PermanentNodeError, PolicyViolation, TransientNodeError
from orchestrion.handlers.base import Controls, NodeContext, Resources, Wait
from orchestrion.handlers.python import (
    SPEC,
    FunctionRegistry,
    PythonConfig,
    function,
    function_registry,
    resolve_function,
)


def make_ctx(**overrides: Any) -> NodeContext:
    return node_context("python", **overrides)


async def call(name: str, params: dict[str, Any] | None = None, **ctx: Any) -> Any:
    config = PythonConfig.model_validate({"function": name, "params": params or {}})
    return await SPEC.run(make_ctx(**ctx), config)


@pytest.fixture
def registered() -> Iterator[list[str]]:
    """Names registered by a test, removed afterwards so tests stay independent."""
    names: list[str] = []
    yield names
    for name in names:
        function_registry.unregister(name)


# Module-level, so that the dotted-path tests can import them from this very module.
def add(a: int, b: int = 1) -> int:
    return a + b


def returns_set() -> Any:
    return {"ok": {1, 2}}


NOT_CALLABLE = 42


async def test_decorator_forms_register(registered: list[str]) -> None:
    @function
    def t_bare(x: int) -> int:
        return x * 2

    @function()
    def t_called(x: int) -> int:
        return x * 3

    @function("t_named")
    def whatever(x: int) -> int:
        return x * 4

    registered += ["t_bare", "t_called", "t_named"]
    assert await call("t_bare", {"x": 2}) == 4
    assert await call("t_called", {"x": 2}) == 6
    assert await call("t_named", {"x": 2}) == 8
    assert "t_named" in function_registry.names()


def test_clash_between_user_functions_raises(registered: list[str]) -> None:
    @function("t_clash")
    def first() -> int:
        return 1

    registered.append("t_clash")
    with pytest.raises(ValueError, match="already registered"):

        @function("t_clash")
        def second() -> int:
            return 2

    @function("t_clash", replace=True)
    def third() -> int:
        return 3

    assert function_registry.get("t_clash") is third


def test_user_function_overrides_builtin_example() -> None:
    registry = FunctionRegistry()

    def builtin() -> str:
        return "builtin"

    def user() -> str:
        return "user"

    registry.register("validate_schema", builtin, builtin=True)
    registry.register("validate_schema", user)  # no error: user code wins
    assert registry.get("validate_schema") is user
    registry.register("validate_schema", builtin, builtin=True)  # e.g. examples imported late
    assert registry.get("validate_schema") is user


def test_register_rejects_non_callable() -> None:
    with pytest.raises(TypeError):
        FunctionRegistry().register("x", 42)  # type: ignore[arg-type]


@pytest.mark.parametrize("func", [functools.partial(max, 1), 42])
def test_a_function_without_a_name_is_refused_saying_why(func: Any) -> None:
    # A partial or a callable object has no __name__ to register it under.
    with pytest.raises(TypeError, match=r"cannot register .* (no name|not callable)"):
        function(inline=True)(func)
    with pytest.raises(TypeError, match=r"cannot register .* (no name|not callable)"):
        function(func, inline=True)


async def test_sync_function_runs_in_worker_thread(registered: list[str]) -> None:
    seen: list[int] = []

    @function("t_thread")
    def where() -> str:
        seen.append(threading.get_ident())
        return "done"

    registered.append("t_thread")
    assert await call("t_thread") == "done"
    assert seen and seen[0] != threading.get_ident()


async def test_async_function_runs_on_the_loop(registered: list[str]) -> None:
    loop = asyncio.get_running_loop()

    @function("t_async")
    async def on_loop(delay: float) -> dict[str, Any]:
        await asyncio.sleep(delay)
        return {"same_loop": asyncio.get_running_loop() is loop}

    registered.append("t_async")
    assert await call("t_async", {"delay": 0.01}) == {"same_loop": True}


async def test_ctx_and_context_injection(registered: list[str]) -> None:
    @function("t_ctx")
    def with_ctx(ctx: NodeContext, n: int) -> dict[str, Any]:
        return {"node": ctx.node_id, "attempt": ctx.attempt, "n": n}

    @function("t_context")
    async def with_context(*, context: NodeContext) -> str:
        return context.execution_id

    registered += ["t_ctx", "t_context"]
    assert await call("t_ctx", {"n": 1}, node_id="step", attempt=3) == {
        "node": "step",
        "attempt": 3,
        "n": 1,
    }
    assert await call("t_context", execution_id="e-9") == "e-9"


async def test_param_named_context_given_in_config_wins(registered: list[str]) -> None:
    @function("t_llm_like")
    def summarise(context: str) -> str:
        return context.upper()

    registered.append("t_llm_like")
    assert await call("t_llm_like", {"context": "abc"}) == "ABC"


async def test_dotted_paths() -> None:
    assert await call("textwrap:shorten", {"text": "a b c d e f", "width": 7}) == "a [...]"
    assert await call("textwrap.shorten", {"text": "a b c", "width": 20}) == "a b c"
    assert await call(f"{__name__}:add", {"a": 2}) == 3
    assert await call(f"{__name__}.add", {"a": 2, "b": 5}) == 7
    # An async function reached by dotted path is awaited.
    assert await call("asyncio.sleep", {"delay": 0, "result": "slept"}) == "slept"
    # Attribute paths below the module.
    assert (
        await call("json:JSONEncoder.encode", {"self": __import__("json").JSONEncoder(), "o": [1]})
        == "[1]"
    )


async def test_registry_wins_over_dotted_path(registered: list[str]) -> None:
    function_registry.register("textwrap.shorten", lambda **_: "registered")
    registered.append("textwrap.shorten")
    assert await call("textwrap.shorten", {"text": "x"}) == "registered"


@pytest.mark.parametrize(
    "name",
    [
        "no_such_function",
        "no_such_module_xyz.func",
        "no_such_module_xyz:func",
        "textwrap:no_such_attr",
        "not a name!",
    ],
)
def test_unknown_function_fails_config_validation(name: str) -> None:
    with pytest.raises(ValidationError) as info:
        PythonConfig.model_validate({"function": name})
    text = str(info.value)
    assert f"unknown function '{name}': not registered and not an importable dotted path" in text


def test_not_callable_target_fails_validation() -> None:
    with pytest.raises(ValidationError, match="not callable"):
        PythonConfig.model_validate({"function": f"{__name__}:NOT_CALLABLE"})


def test_unrendered_template_is_left_for_run_time() -> None:
    config = PythonConfig.model_validate({"function": "{{ input.fn }}"})
    assert config.function == "{{ input.fn }}"


def test_config_rejects_unknown_keys() -> None:
    with pytest.raises(ValidationError) as info:
        PythonConfig.model_validate({"function": "validate_schema", "parms": {}})
    assert "parms" in str(info.value)


async def test_unknown_function_at_run_time_is_permanent() -> None:
    config = PythonConfig.model_construct(function="nope_nothing", params={})
    with pytest.raises(PermanentNodeError) as info:
        await SPEC.run(make_ctx(), config)
    assert "unknown function 'nope_nothing'" in str(info.value)
    assert not info.value.transient


async def test_non_json_output_is_permanent_error() -> None:
    with pytest.raises(PermanentNodeError) as info:
        await call(f"{__name__}:returns_set")
    assert "'set'" in str(info.value)
    assert info.value.category == "output"


async def test_nan_output_is_rejected(registered: list[str]) -> None:
    function_registry.register("t_nan", lambda: {"x": float("nan")})
    registered.append("t_nan")
    with pytest.raises(PermanentNodeError, match="not JSON-serialisable"):
        await call("t_nan")


async def test_wrong_params_are_permanent_config_errors() -> None:
    with pytest.raises(PermanentNodeError) as info:
        await call(f"{__name__}:add", {"a": 1, "c": 3})
    assert "does not accept" in str(info.value)
    assert info.value.category == "config"


async def test_node_errors_raised_by_functions_pass_through() -> None:
    with pytest.raises(TransientNodeError, match="boom"):
        await call("fail", {"transient": True, "message": "boom"})


async def test_function_may_return_wait(registered: list[str]) -> None:
    @function("t_wait")
    def wait() -> Wait:
        return Wait(reason="approval")

    registered.append("t_wait")
    assert await call("t_wait") == Wait(reason="approval")


async def test_allowlist_hook_blocks_dotted_imports() -> None:
    resources = Resources(
        replace(Controls.unrestricted(), python_allowlist=("textwrap", "json:dumps"))
    )
    ok = PythonConfig.model_validate(
        {"function": "textwrap.shorten", "params": {"text": "a", "width": 9}}
    )
    assert await SPEC.run(make_ctx(resources=resources), ok) == "a"
    dumps = PythonConfig.model_validate({"function": "json:dumps", "params": {"obj": 1}})
    assert await SPEC.run(make_ctx(resources=resources), dumps) == "1"
    blocked = PythonConfig.model_validate({"function": "json:loads", "params": {"s": "1"}})
    with pytest.raises(PolicyViolation, match="not in the allowlist"):
        await SPEC.run(make_ctx(resources=resources), blocked)
    # Registered functions are always allowed.
    sample = PythonConfig.model_validate({"function": "clean_dataframe"})
    assert (await SPEC.run(make_ctx(resources=resources), sample))["row_count"] > 0


def test_allowlist_from_validation_context() -> None:
    with pytest.raises(ValidationError, match="not in the allowlist"):
        PythonConfig.model_validate(
            {"function": "os:getcwd"}, context={"python_allowlist": ["textwrap"]}
        )
    PythonConfig.model_validate({"function": "os:getcwd"}, context={"python_allowlist": ["os"]})


def test_resolve_function_prefers_longest_module() -> None:
    import os.path

    assert resolve_function("os.path.join") is os.path.join


def test_broken_import_is_reported(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "t_broken_mod.py").write_text("import t_missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValidationError, match="t_missing_dependency_xyz"):
        PythonConfig.model_validate({"function": "t_broken_mod:f"})


# --- the built-in example functions (reference 000) -------------------------------------


async def test_reference_000_chain() -> None:
    init = await call("validate_schema", {"initial_data": "ready"}, node_id="initialize_data")
    assert init["valid"] is True
    assert init["params"] == {"initial_data": "ready"}

    cleaned = await call(
        "clean_dataframe",
        {"columns": ["id", "value", "status"]},
        node_id="process_data",
        dependencies=("initialize_data",),
        outputs={"initialize_data": init},
    )
    assert cleaned["columns"] == ["id", "value", "status"]
    assert cleaned["dropped"] == 2  # the rows with a missing value or status
    assert cleaned["rows"][0] == {"id": 1, "value": 10.5, "status": "active"}

    validated = await call(
        "validate_schema",
        {"required_columns": ["id", "value", "status"]},
        dependencies=("process_data",),
        outputs={"process_data": cleaned},
    )
    assert validated["valid"] is True
    assert validated["checked"] == ["id", "value", "status"]
    assert validated["row_count"] == cleaned["row_count"]
    assert validated["source"] == "process_data"

    final = await call(
        "transform_data",
        {"output_format": "json"},
        dependencies=("validate_output",),
        outputs={"validate_output": validated},
    )
    assert final["format"] == "json"
    assert final["summary"]["count"] == len(cleaned["rows"])
    assert sum(record["share"] for record in final["records"]) == pytest.approx(1.0, abs=1e-3)
    # Deterministic.
    again = await call("transform_data", {}, dependencies=("v",), outputs={"v": validated})
    assert again == final


async def test_validate_schema_detects_missing_columns() -> None:
    with pytest.raises(PermanentNodeError, match="'owner'"):
        await call("validate_schema", {"required_columns": ["id", "owner"], "rows": [{"id": 1}]})


async def test_transform_data_csv_and_bad_format() -> None:
    out = await call("transform_data", {"output_format": "csv", "rows": [{"id": 1, "value": 2}]})
    assert out["data"].splitlines() == ["id,share,value", "1,1.0,2"]
    with pytest.raises(PermanentNodeError, match="xml"):
        await call("transform_data", {"output_format": "xml", "rows": []})


@pytest.mark.parametrize(
    "name", ["rollback_initialize", "rollback_process", "rollback_validate", "rollback_finalize"]
)
async def test_rollback_functions(name: str) -> None:
    assert await call(name, node_id="process_data") == {
        "rolled_back": "process_data",
        "compensation": name,
    }


async def test_fail_flaky_sleep() -> None:
    with pytest.raises(PermanentNodeError, match="nope") as info:
        await call("fail", {"message": "nope"})
    assert not info.value.transient
    with pytest.raises(TransientNodeError):
        await call("flaky", {"failures": 2}, attempt=1)
    with pytest.raises(TransientNodeError):
        await call("flaky", {"failures": 2}, attempt=2)
    assert await call("flaky", {"failures": 2, "value": "v"}, attempt=3) == {
        "attempt": 3,
        "value": "v",
    }
    assert await call("sleep", {"seconds": 0.01}) == {"slept": 0.01, "value": None}


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("textwrap.re.compile", "module 're'"),  # through an allowed module's import
        ("textwrap:_whitespace", "private attribute"),
        ("textwrap.TextWrapper.__init__", "private attribute"),
        ("os.system", "module 'os' is not in the allowlist"),
        ("builtins.__import__", "module 'builtins'"),
    ],
)
def test_an_allowlist_cannot_be_walked_around(name: str, why: str) -> None:
    with pytest.raises(PolicyViolation, match=why):
        resolve_function(name, ["textwrap"])
    assert resolve_function("textwrap.TextWrapper.fill", ["textwrap"]) is not None


def test_a_module_outside_the_allowlist_is_never_imported(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    (tmp_path / "t_side_effect_mod.py").write_text("raise SystemExit('imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValidationError, match="not in the allowlist") as refused:
        PythonConfig.model_validate(
            {"function": "t_side_effect_mod:f"}, context={"python_allowlist": []}
        )
    assert refused.value.errors()[0]["type"] == "policy_violation"
    assert "t_side_effect_mod" not in sys.modules


async def test_a_sync_function_declared_non_blocking_runs_on_the_loop(
    registered: list[str],
) -> None:
    seen: list[int] = []

    @function("t_quick", blocking=False)
    def quick(n: int) -> int:
        seen.append(threading.get_ident())
        return n + 1

    registered.append("t_quick")
    assert function_registry.blocking("t_quick") is False
    assert await call("t_quick", {"n": 1}) == 2
    assert seen == [threading.get_ident()]
    # Registered again without the declaration: back to a worker thread.
    function_registry.register("t_quick", quick, replace=True)
    assert await call("t_quick", {"n": 2}) == 3
    assert seen[1] != threading.get_ident()


def _positional_only(a: int, /, b: int = 0) -> int:
    return a + b


def _keyword_only(*, a: int, b: int = 0) -> int:
    return a + b


def _any_keywords(a: int, **rest: Any) -> int:
    return a


def _star_args(*args: Any, a: int) -> int:
    return a


@pytest.mark.parametrize(
    ("func", "params", "fits"),
    [
        (add, {"a": 1}, True),
        (add, {"a": 1, "b": 2}, True),
        (add, {"b": 2}, False),  # a missing
        (add, {"a": 1, "c": 3}, False),  # c unknown
        (_positional_only, {"a": 1}, False),  # a cannot be given by name
        (_positional_only, {}, False),
        (_keyword_only, {"a": 1}, True),
        (_keyword_only, {"b": 1}, False),
        (_any_keywords, {"a": 1, "zzz": 2}, True),
        (_any_keywords, {"zzz": 2}, False),
        (_star_args, {"a": 1}, True),
        (_star_args, {}, False),
    ],
)
async def test_params_are_checked_as_signature_bind_checks_them(
    registered: list[str], func: Any, params: dict[str, Any], fits: bool
) -> None:
    function_registry.register("t_params", func)
    registered.append("t_params")
    for _ in range(2):  # the second call uses what the first worked out
        if fits:
            assert await call("t_params", params) == func(**params)
        else:
            with pytest.raises(PermanentNodeError, match="does not accept the given params"):
                await call("t_params", params)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
async def test_a_non_finite_float_output_is_rejected(registered: list[str], value: float) -> None:
    function_registry.register("t_float", lambda: value)
    registered.append("t_float")
    with pytest.raises(PermanentNodeError, match="not JSON-serialisable"):
        await call("t_float")
