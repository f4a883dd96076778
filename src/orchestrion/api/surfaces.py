"""Which request paths are the API: ``/v1`` and the compatibility surfaces beside it.

The gate (401 before a body is read) and the audit trail treat every path here alike, so a
client of a compatibility surface meets the same keys, limits and records as one of ``/v1``.
Health, metrics and the docs are not among them: the docs and the dashboard's pages (the
page shells and their static files, no data in them) are ``is_page_path``.
"""

from __future__ import annotations

__all__ = ["ADMIN_PREFIXES", "DEFINITION_PATHS", "HOOKS_PREFIX", "is_api_path", "is_page_path"]

# ``/v1`` (ours), ``/api/v1`` (the production-grade orchestrator's description), and the
# unversioned ``/workflow`` and ``/workflows`` (the SwarmLite and the Kafka-queue engine's).
_PREFIXES = ("/v1/", "/api/v1/", "/workflow/", "/workflows/")
_EXACT = frozenset({"/workflow", "/workflows"})

# Inbound webhooks: API paths, but signed with a shared secret instead of an API key.
HOOKS_PREFIX = "/v1/hooks/"

ADMIN_PREFIXES = ("/v1/admin", "/v1/audit", "/api/v1/admin")

# Routes whose JSON body is a definition: its depth is bounded by the policy's
# definitions.max_nesting_depth, not the general bound.
DEFINITION_PATHS = frozenset(
    {"/v1/workflow", "/v1/workflow/validate", "/api/v1/workflow", "/workflow"}
)


def is_api_path(path: str) -> bool:
    """Whether ``path`` belongs to the API (``/v1`` or a compatibility surface)."""
    return path in _EXACT or path.startswith(_PREFIXES)


# The dashboard (``/`` redirects to it) and the API's own documentation: page shells and static
# files that hold no data; what they show, they fetch from the API.
_PAGE_PREFIXES = ("/ui/", "/docs/static/")
_PAGE_EXACT = frozenset({"/", "/ui", "/docs", "/docs/"})  # "/docs/" redirects to "/docs"


def is_page_path(path: str) -> bool:
    """Whether ``path`` is one of the dashboard's or the docs' pages or static files."""
    return path in _PAGE_EXACT or path.startswith(_PAGE_PREFIXES)
