"""``orchestrion.testing``: a user's functions and handlers, run in a throw-away engine."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrion.handlers import HandlerSpec, NodeContext, function
from orchestrion.testing import node_context, registered_functions, run_in_memory


def _python_flow(name: str) -> dict[str, Any]:
    node = {"id": "call", "handler": "python", "config": {"function": name, "params": {"x": 21}}}
    return {"name": "doubling", "dag": {"nodes": [node]}}


def test_a_workflow_of_ones_own_function_runs_in_memory() -> None:
    with registered_functions(testing_double=lambda x: 2 * x):
        result = run_in_memory(_python_flow("testing_double"))
    assert result.ok
    assert result.nodes["call"].output == 42


def test_registered_functions_give_names_back_afterwards() -> None:
    @function("testing_kept")
    def kept(x: int) -> int:
        return x

    from orchestrion.handlers.python import function_registry

    try:
        with registered_functions(testing_kept=lambda x: -x, testing_new=lambda x: x):
            assert function_registry.get("testing_kept") is not kept
        assert function_registry.get("testing_kept") is kept
        assert "testing_new" not in function_registry
    finally:
        function_registry.unregister("testing_kept")


def test_registered_functions_give_back_how_a_name_was_registered() -> None:
    from orchestrion.handlers.python import _load_examples, function_registry

    @function("testing_inline", inline=True)
    def quick(x: int) -> int:
        return x

    _load_examples()  # the built-in example functions, which a user's function replaces
    try:
        with registered_functions(testing_inline=lambda x: -x, clean_dataframe=lambda x: x):
            assert not function_registry.inline("testing_inline")
        assert function_registry.get("testing_inline") is quick
        assert function_registry.inline("testing_inline")
        # Still a built-in example: a user's function of that name replaces it silently.
        function("clean_dataframe")(quick)
        assert function_registry.get("clean_dataframe") is quick
    finally:
        function_registry.unregister("testing_inline")
        function_registry.unregister("clean_dataframe")
        import orchestrion.handlers.examples as examples

        function_registry.register(
            "clean_dataframe", examples.clean_dataframe, builtin=True, replace=True
        )


async def _shout(ctx: NodeContext, config: Any) -> dict[str, str]:
    return {"said": ctx.node_id.upper(), "from": ",".join(ctx.dependencies)}


SHOUT = HandlerSpec(name="testing_shout", run=_shout)


def test_a_handler_not_installed_runs_when_given() -> None:
    flow = {"name": "shouting", "dag": {"nodes": [{"id": "hey", "handler": "testing_shout"}]}}
    result = run_in_memory(flow, handlers=[SHOUT])
    assert result.ok
    assert result.nodes["hey"].output == {"said": "HEY", "from": ""}


def test_a_handler_is_called_directly_with_a_node_context() -> None:
    ctx = node_context("hey", outputs={"before": 1})
    assert ctx.idempotency_key == "test-execution:hey:1"
    assert asyncio.run(_shout(ctx, None)) == {"said": "HEY", "from": "before"}


def test_node_context_takes_the_tests_own_resources() -> None:
    from orchestrion.handlers import Controls, Resources
    from orchestrion.testing import node_context

    mine = Resources(Controls.unrestricted())
    assert node_context(resources=mine).resources is mine
    assert node_context().resources is not mine


def test_a_replaced_function_gets_its_declaration_back() -> None:
    from orchestrion.handlers.python import function_registry

    def quick() -> int:
        return 1

    function_registry.register("t_declared", quick, blocking=False)
    try:
        with registered_functions(t_declared=lambda: 2):
            assert function_registry.blocking("t_declared") is True
        assert function_registry.get("t_declared") is quick
        assert function_registry.blocking("t_declared") is False
    finally:
        function_registry.unregister("t_declared")
