"""The handler-author API: what a node handler is, what it is given, how it fails or waits.

    from orchestrion.handlers import HandlerSpec, NodeContext, TransientNodeError

    async def greet(ctx: NodeContext, config: GreetConfig) -> dict[str, str]:
        return {"greeting": f"Hello, {config.name}!"}

    SPEC = HandlerSpec(name="greet", run=greet, config_model=GreetConfig)

A plug-in publishes its ``HandlerSpec`` in the ``orchestrion.handlers`` entry point group;
``function`` registers a plain Python function for the built-in ``python`` handler. The
modules of this package (the built-in handlers, the registry) are internal: import from here.
``function`` is imported on first use, so that loading a handler spec does not load the
``python`` handler.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from orchestrion.errors import NodeError, PermanentNodeError, TransientNodeError
from orchestrion.handlers.base import (
    LATER,
    Controls,
    HandlerFunc,
    HandlerSpec,
    NodeContext,
    NowFunc,
    Resources,
    Wait,
    run_of,
)

if TYPE_CHECKING:
    from orchestrion.handlers.python import function

__all__ = [
    "LATER",
    "Controls",
    "HandlerFunc",
    "HandlerSpec",
    "NodeContext",
    "NodeError",
    "NowFunc",
    "PermanentNodeError",
    "Resources",
    "TransientNodeError",
    "Wait",
    "function",
    "run_of",
]


def __getattr__(name: str) -> Any:
    if name == "function":
        return import_module("orchestrion.handlers.python").function
    raise AttributeError(f"module 'orchestrion.handlers' has no attribute {name!r}")
