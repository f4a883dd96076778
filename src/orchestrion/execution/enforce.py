"""Where the runtime enforces the policy: the controls a ``Governance`` gives handlers.

``controls_of(governance)`` builds the ``Controls`` of one process's resources (the engine's
in-process workers, a scale-out worker), each of them present:

- ``url_guard``: the SSRF guard (``UrlPolicy``), run by the http handler before every request
  and every redirect hop, and by the llm handler on the provider URL (the shared http client
  checks the addresses again when it connects: see ``PinnedBackend``);
- ``llm_policy``: the ``LlmPolicy`` the llm handler checks the rendered prompt against, and
  its confidence threshold for human review; ``llm_guard`` adds nothing to it here;
- ``python_allowlist``: the modules the python handler may import from (``None``: trusted);
- ``untrusted_python_allowlist``: the allowlist of untrusted work, which a trusted process
  applies to each attempt of an untrusted execution (``attempt_resources``);
- ``routing``: the llm providers and where each secret may be sent, with the trust of the
  process (``governance/secret_routes.py``), for the llm and http handlers and the
  executor's check of where secrets flow;
- ``template_limits``: the time and size limits of every template render of an attempt.
"""

from __future__ import annotations

from typing import Any

from orchestrion.governance.llm_providers import LlmProviders
from orchestrion.governance.runtime import Governance
from orchestrion.governance.secret_routes import Routing
from orchestrion.governance.trust import Trust
from orchestrion.handlers.config_context import validation_context as context_of
from orchestrion.handlers.resources import ALLOW_ANY_PROMPT, Controls, Resources
from orchestrion.templates.rendering import TemplateLimits

__all__ = [
    "attempt_resources",
    "controls_of",
    "routing_of",
    "template_limits_of",
    "validation_context",
]


def routing_of(governance: Governance) -> Routing:
    """The providers and secret destinations of the policy, for ``governance``'s trust."""
    policy = governance.policy
    providers = LlmProviders.from_sections(policy.llm.providers, trusted=governance.trusted)
    return Routing(policy.secrets, providers)


def template_limits_of(governance: Governance) -> TemplateLimits:
    section = governance.policy.templates
    return TemplateLimits(section.timeout_seconds, section.max_output_bytes)


def controls_of(governance: Governance) -> Controls:
    """The controls of the policy of ``governance``, for a process of its trust."""
    return Controls(
        url_guard=governance.url_policy,
        llm_policy=governance.llm,
        llm_guard=ALLOW_ANY_PROMPT,  # the policy's checks are the llm_policy's
        routing=routing_of(governance),
        python_allowlist=governance.python_allowlist,
        untrusted_python_allowlist=governance.untrusted().python_allowlist or (),
        template_limits=template_limits_of(governance),
    )


def attempt_resources(resources: Resources, trust: object) -> Resources:
    """The resources one attempt of work at ``trust`` runs with (``governance/trust.py``).

    The stricter of the process's trust and the work's: an untrusted attempt in a trusted
    process gets a view whose controls are those of untrusted work (its allowlist, its
    routing), sharing the process's HTTP client and everything else.
    """
    if Trust.of(trust).trusted:
        return resources
    return resources.with_controls(resources.controls.for_untrusted_work())


def validation_context(governance: Governance) -> dict[str, Any]:
    """The validation context that applies the policy to node configs (``check_spec``)."""
    return context_of(controls_of(governance))
