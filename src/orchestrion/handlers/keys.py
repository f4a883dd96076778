"""Names of the entries of ``Resources.extra`` that the runtime fills and handlers read.

They live apart from the handlers so that the engine and the governance hooks can name them
without importing every handler module (the built-in handlers are imported on first use).
"""

from __future__ import annotations

__all__ = [
    "ALLOWLIST_KEY",
    "CHILD_STARTER_KEY",
    "CHILD_WAITER_KEY",
    "LLM_GUARD_KEY",
    "LLM_POLICY_KEY",
    "PROGRESS_KEY",
    "ROUTING_KEY",
    "URL_GUARD_KEY",
]

URL_GUARD_KEY = "url_guard"  # the SSRF guard (UrlPolicy) of the http and llm handlers
LLM_GUARD_KEY = "llm_guard"
LLM_POLICY_KEY = "llm_policy"
ALLOWLIST_KEY = "python_allowlist"  # modules the python handler may import from
ROUTING_KEY = "secret_routing"
"""The ``Routing`` (governance/secret_routes.py): llm providers, where secrets may go, trust."""
PROGRESS_KEY = "progress"
"""``report(execution_id, node_id, counts)``: a map node's live per-item progress."""
CHILD_STARTER_KEY = "child_starter"  # how a workflow node starts its child execution
CHILD_WAITER_KEY = "child_waiter"
"""``await waiter(child_execution_id)`` -> the finished child's node output, or raises."""
