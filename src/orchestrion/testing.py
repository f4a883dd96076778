"""Helpers for testing one's own workflows, functions and handlers.

    from orchestrion.testing import registered_functions, run_in_memory

    def double(x: int) -> int:
        return 2 * x

    def test_my_flow() -> None:
        with registered_functions(double=double):
            result = run_in_memory("flow.yaml", {"x": 21})
        assert result.ok and result.nodes["double"].output == 42

``run_in_memory`` runs a workflow to its end in a fresh engine on a ``MemoryStore``: nothing
is written to disk and nothing outlives the call. ``handlers=`` adds handler specs not
installed as plug-ins (the one under test). ``node_context`` builds the ``NodeContext`` a
handler receives, to call a handler directly. The engine and the handler modules are
imported on first use, so that a ``conftest.py`` importing this module stays cheap; this
module's own namespace holds only what it exports.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from orchestrion.store.memory import MemoryStore

if TYPE_CHECKING:
    from orchestrion.core.result import ExecutionResult
    from orchestrion.handlers.base import HandlerSpec, NodeContext, Resources

__all__ = [
    "MemoryStore",
    "arun_in_memory",
    "node_context",
    "registered_functions",
    "run_in_memory",
]


@contextmanager
def registered_functions(**functions: Callable[..., Any]) -> Iterator[None]:
    """Register ``functions`` for the ``python`` handler under their keyword names while the
    block runs; names they replace get their former function back afterwards."""
    from orchestrion.handlers.python import function_registry

    previous = {name: function_registry.saved(name) for name in functions}
    for name, func in functions.items():
        function_registry.register(name, func, replace=True)
    try:
        yield
    finally:
        # Each name as it was, how it asked to be called included (a built-in example stays
        # one, which a user's function of that name replaces without a word).
        for name, saved in previous.items():
            function_registry.restore(name, saved)


async def arun_in_memory(
    definition: Any,
    inputs: dict[str, Any] | None = None,
    *,
    handlers: Iterable[HandlerSpec] = (),
    timeout: float | None = 60.0,
) -> ExecutionResult:
    """Run ``definition`` (path, YAML/JSON text, dict or ``WorkflowSpec``) to its end in an
    engine of its own on a ``MemoryStore``, with ``handlers`` added to the usual ones."""
    from orchestrion.engine.facade import Engine
    from orchestrion.handlers.registry import default_registry

    registry = default_registry().copy()
    for spec in handlers:
        registry.register(spec, replace=True)
    async with Engine(store=MemoryStore(), registry=registry) as engine:
        return await engine.run(definition, inputs, timeout=timeout)


def run_in_memory(
    definition: Any,
    inputs: dict[str, Any] | None = None,
    *,
    handlers: Iterable[HandlerSpec] = (),
    timeout: float | None = 60.0,
) -> ExecutionResult:
    """Blocking form of ``arun_in_memory``; inside a running event loop await that instead."""
    return asyncio.run(arun_in_memory(definition, inputs, handlers=handlers, timeout=timeout))


def node_context(
    node_id: str = "node",
    *,
    inputs: Mapping[str, Any] | None = None,
    outputs: Mapping[str, Any] | None = None,
    handler: str = "test",
    execution_id: str = "test-execution",
    attempt: int = 1,
    wait_result: Any = None,
    resources: Resources | None = None,
) -> NodeContext:
    """The context a handler is given for one attempt, for calling a handler directly:
    ``outputs`` are those of the nodes it depends on (they become its dependencies)."""
    from orchestrion.handlers.base import Controls, NodeContext, Resources

    upstream = dict(outputs or {})
    return NodeContext(
        execution_id=execution_id,
        node_id=node_id,
        attempt=attempt,
        idempotency_key=f"{execution_id}:{node_id}:{attempt}",
        inputs=dict(inputs or {}),
        outputs=upstream,
        dependencies=tuple(upstream),
        handler=handler,
        # one's own handler, no policy; give ``resources`` for an http client of the test's
        resources=resources or Resources(Controls.unrestricted()),
        wait_result=wait_result,
    )
