"""The ``NodeContext`` a handler's tests call it with, as the executor would give it."""

from __future__ import annotations

from typing import Any

from orchestrion.handlers.base import Controls, NodeContext, Resources

__all__ = ["node_context"]


def node_context(handler: str, node: str = "node", **overrides: Any) -> NodeContext:
    """The first attempt of node ``node`` (a ``handler`` node) of execution ``exec-1``, with
    no inputs, outputs or limits; ``overrides``: other values for its fields."""
    values: dict[str, Any] = {
        "execution_id": "exec-1",
        "node_id": node,
        "attempt": 1,
        "idempotency_key": f"exec-1:{node}:1",
        "inputs": {},
        "outputs": {},
        "dependencies": (),
        "handler": handler,
        "resources": Resources(Controls.unrestricted()),
    }
    values.update(overrides)
    return NodeContext(**values)
