"""Where the runtime enforces the policy: the hooks a ``Governance`` puts in handler resources.

``install(governance, extra)`` fills ``Resources.extra`` of one process's executor (the
engine's in-process workers, a scale-out worker) with what handlers consult before acting:

- ``url_guard``: the SSRF guard (``UrlPolicy``), run by the http handler before every request
  and every redirect hop, and by the llm handler on the provider URL (the shared http client
  checks the addresses again when it connects: see ``PinnedBackend``);
- ``llm_policy``: the ``LlmPolicy`` the llm handler checks the rendered prompt against, and
  its confidence threshold for human review;
- ``python_allowlist``: the modules the python handler may import from (``None``: trusted);
- ``untrusted_python_allowlist``: the allowlist of untrusted work, which a trusted process
  applies to each attempt of an untrusted execution (``governance/trust.py``);
- ``secret_routing``: the llm providers and where each secret may be sent, with the trust of
  the process (``governance/secret_routes.py``), for the llm and http handlers and the
  executor's check of where secrets flow;
- ``template_limits``: the time and size limits of every template render of an attempt.
"""

from __future__ import annotations

from typing import Any

from orchestrion.governance.llm_providers import LlmProviders
from orchestrion.governance.runtime import Governance
from orchestrion.governance.secret_routes import Routing
from orchestrion.governance.trust import UNTRUSTED_ALLOWLIST_KEY
from orchestrion.handlers.keys import ALLOWLIST_KEY, LLM_POLICY_KEY, ROUTING_KEY, URL_GUARD_KEY
from orchestrion.templates.rendering import LIMITS_KEY, TemplateLimits

__all__ = ["install", "routing_of", "template_limits_of", "validation_context"]


def routing_of(governance: Governance) -> Routing:
    """The providers and secret destinations of the policy, for ``governance``'s trust."""
    policy = governance.policy
    providers = LlmProviders.from_sections(policy.llm.providers, trusted=governance.trusted)
    return Routing(policy.secrets, providers)


def template_limits_of(governance: Governance) -> TemplateLimits:
    section = governance.policy.templates
    return TemplateLimits(section.timeout_seconds, section.max_output_bytes)


def install(governance: Governance, extra: dict[str, Any]) -> None:
    """Put the policy's hooks in ``extra`` (replacing those of a previous policy)."""
    extra[URL_GUARD_KEY] = governance.url_policy
    extra[LLM_POLICY_KEY] = governance.llm
    extra[ALLOWLIST_KEY] = governance.python_allowlist
    extra[UNTRUSTED_ALLOWLIST_KEY] = governance.untrusted().python_allowlist
    extra[LIMITS_KEY] = template_limits_of(governance)
    extra[ROUTING_KEY] = routing_of(governance)


def validation_context(governance: Governance) -> dict[str, Any]:
    """The validation context that applies the policy to node configs (``check_spec``)."""
    context: dict[str, Any] = {ROUTING_KEY: routing_of(governance)}
    allowlist = governance.python_allowlist
    if allowlist is not None:
        context[ALLOWLIST_KEY] = allowlist
    return context
