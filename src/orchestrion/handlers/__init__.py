"""The handler-author API: what a node handler is, what it is given, how it fails or waits.

    from orchestrion.handlers import HandlerSpec, NodeContext, TransientNodeError

    async def greet(ctx: NodeContext, config: GreetConfig) -> dict[str, str]:
        return {"greeting": f"Hello, {config.name}!"}

    SPEC = HandlerSpec(name="greet", run=greet, config_model=GreetConfig)

A plug-in publishes its ``HandlerSpec`` in the ``orchestrion.handlers`` entry point group;
``function`` registers a plain Python function for the built-in ``python`` handler;
``Engine(registry=...)`` takes a ``HandlerRegistry`` (``default_registry()`` is the one with
the built-ins and the installed plug-ins) to run handlers that are not installed. The
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
    from orchestrion.handlers.registry import HandlerRegistry, default_registry

__all__ = [
    "LATER",
    "Controls",
    "HandlerFunc",
    "HandlerRegistry",
    "HandlerSpec",
    "NodeContext",
    "NodeError",
    "NowFunc",
    "PermanentNodeError",
    "Resources",
    "TransientNodeError",
    "Wait",
    "default_registry",
    "function",
    "run_of",
]


_LAZY = {
    "function": "orchestrion.handlers.python",
    "HandlerRegistry": "orchestrion.handlers.registry",
    "default_registry": "orchestrion.handlers.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'orchestrion.handlers' has no attribute {name!r}")
