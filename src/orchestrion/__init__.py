"""Orchestrion: durable workflow orchestration for Python.

    import orchestrion
    result = orchestrion.run("flow.yaml", {"user_id": 123})
    print(result.status, result.result)

Names are imported lazily so that ``import orchestrion`` (and the CLI) start fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "DefinitionError",
    "Engine",
    "ExecutionRecord",
    "ExecutionResult",
    "ExecutionStatus",
    "NodeContext",
    "NodeState",
    "OrchestrionError",
    "PermanentNodeError",
    "TransientNodeError",
    "WorkflowSpec",
    "__version__",
    "arun",
    "function",
    "load_definition",
    "run",
]

_LAZY = {
    "DefinitionError": "orchestrion.errors",
    "OrchestrionError": "orchestrion.errors",
    "PermanentNodeError": "orchestrion.errors",
    "TransientNodeError": "orchestrion.errors",
    "Engine": "orchestrion.engine.facade",
    "ExecutionRecord": "orchestrion.store.base",
    "ExecutionResult": "orchestrion.core.result",
    "ExecutionStatus": "orchestrion.core.states",
    "NodeState": "orchestrion.core.states",
    "NodeContext": "orchestrion.handlers.base",
    "WorkflowSpec": "orchestrion.definition.model",
    "load_definition": "orchestrion.handlers.loading",
    "function": "orchestrion.handlers.python",
    "run": "orchestrion.engine.embedded",
    "arun": "orchestrion.engine.embedded",
}

if TYPE_CHECKING:
    from orchestrion.core.result import ExecutionResult
    from orchestrion.core.states import ExecutionStatus, NodeState
    from orchestrion.definition.model import WorkflowSpec
    from orchestrion.engine.embedded import arun, run
    from orchestrion.engine.facade import Engine
    from orchestrion.errors import (
        DefinitionError,
        OrchestrionError,
        PermanentNodeError,
        TransientNodeError,
    )
    from orchestrion.handlers.base import NodeContext
    from orchestrion.handlers.loading import load_definition
    from orchestrion.handlers.python import function
    from orchestrion.store.base import ExecutionRecord


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'orchestrion' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
