"""The pydantic validation context node configs are validated with, from the controls.

A config model reads the policy while it validates: the python handler resolves its function
(resolving a dotted path imports its module, so the allowlist must hold already), and the llm
handler fills in its provider's URL from the routing.
"""

from __future__ import annotations

from typing import Any

from orchestrion.governance.secret_routes import ROUTING_KEY
from orchestrion.handlers.resources import Controls

__all__ = ["ALLOWLIST_KEY", "ROUTING_KEY", "item_context", "validation_context"]

ALLOWLIST_KEY = "python_allowlist"
"""Where the validation context holds the python allowlist; absent: any module."""


def validation_context(controls: Controls) -> dict[str, Any]:
    """The context a node's config is validated with under ``controls``."""
    allowlist = controls.python_allowlist
    if allowlist is None:
        return {ROUTING_KEY: controls.routing}
    return {ALLOWLIST_KEY: allowlist, ROUTING_KEY: controls.routing}


def item_context(controls: Controls) -> dict[str, Any] | None:
    """The context a ``map`` item's config is validated with: the allowlist only."""
    allowlist = controls.python_allowlist
    return None if allowlist is None else {ALLOWLIST_KEY: allowlist}
