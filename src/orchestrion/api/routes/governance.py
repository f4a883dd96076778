"""The governance policy in force, and the state of every control (issue #6).

``GET /health/governance`` (viewer role): the validated policy, its source and SHA-256, so an
auditor can tell which policy a server enforces; it holds no secret (the loader refuses
credentials in it, and URLs and header values are shown without them anyway).
``GET /health/compliance`` (admin role, since it lists which controls are off or degraded
and the ids of the keys): one entry per control, ``on`` (enforced), ``off`` (not asked
for, or turned off by the policy) or ``degraded`` (asked for, but not enforceable as
configured: a missing key, an unverified
audit chain). Both answer 200: a degraded control is something to fix, not an outage.

The audit chain's state comes from ``ApiContext.audit_status`` when something set it (the
audit trail's store); until then the audit control says "audit chain not checked".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from orchestrion.api.auth import require_role, required_headers
from orchestrion.api.context import ApiContext
from orchestrion.api.problems import error_responses
from orchestrion.api.routes import Ctx
from orchestrion.governance.encryption import KeyRing
from orchestrion.governance.policy import GovernancePolicy
from orchestrion.governance.policy_secrets import shown_policy
from orchestrion.governance.runtime import Governance

__all__ = ["ComplianceResponse", "Control", "GovernanceResponse", "router"]

router = APIRouter(tags=["health"])

ControlState = Literal["on", "off", "degraded"]


class GovernanceResponse(BaseModel):
    """The policy in force: where it was read from, the hash of its canonical form, itself."""

    model_config = ConfigDict(extra="forbid")

    source: str = Field(description="the policy file, or the shipped default")
    sha256: str = Field(description="SHA-256 of the policy's canonical JSON")
    policy: GovernancePolicy


class Control(BaseModel):
    """One control of the policy and whether this server enforces it."""

    control: str
    state: ControlState
    detail: str
    info: dict[str, Any] = Field(default_factory=dict)


class ComplianceResponse(BaseModel):
    """``degraded`` when a control is; ``sha256`` is the policy's, as in /health/governance."""

    status: Literal["ok", "degraded"]
    sha256: str
    controls: list[Control]


@router.get(
    "/health/governance",
    response_model=GovernanceResponse,
    dependencies=[Depends(require_role("viewer"))],
    responses=error_responses(),
    summary="The governance policy in force, its source and hash",
)
async def governance_policy(ctx: Ctx) -> GovernanceResponse:
    loaded = ctx.engine.governance.loaded
    # The hash is the policy's as loaded; URLs and headers are shown without what could be a
    # credential, even though the loader refuses them (governance/policy_secrets.py).
    policy = shown_policy(loaded.policy)
    return GovernanceResponse(source=loaded.source, sha256=loaded.sha256, policy=policy)


@router.get(
    "/health/compliance",
    response_model=ComplianceResponse,
    dependencies=[Depends(require_role("admin"))],
    responses=error_responses(),
    summary="The state of each governance control: on, off or degraded",
)
async def compliance(ctx: Ctx) -> ComplianceResponse:
    governance = ctx.engine.governance
    controls = [
        _policy(governance),
        _masking(governance),
        _encryption(governance),
        await _audit(ctx, governance),
        _ssrf(governance),
        _python(governance),
        _templates(governance.policy),
        _llm(governance.policy),
        _retention(governance.policy),
        _api_keys(ctx),
        _required_headers(ctx),
        _payload_limit(ctx),
    ]
    degraded = any(control.state == "degraded" for control in controls)
    return ComplianceResponse(
        status="degraded" if degraded else "ok",
        sha256=governance.loaded.sha256,
        controls=controls,
    )


def _policy(governance: Governance) -> Control:
    loaded = governance.loaded
    return Control(
        control="policy",
        state="on",
        detail=f"loaded from {loaded.source}",
        info={"source": loaded.source, "sha256": loaded.sha256},
    )


def _masking(governance: Governance) -> Control:
    masking = governance.policy.masking
    info = {
        "kinds": masking.kinds,
        "patterns": sorted(masking.patterns),
        "classifications": masking.classifications,
    }
    if governance.masker is None:
        return Control(
            control="masking",
            state="off",
            detail="masking is disabled by the policy: logs and responses show personal data",
            info=info,
        )
    kinds = ", ".join([*masking.kinds, *sorted(masking.patterns)]) or "no kind"
    return Control(
        control="masking",
        state="on",
        detail=f"logs masked ({kinds}); outputs of {_names(masking.classifications)} nodes "
        "hidden from callers without the admin role",
        info=info,
    )


def _keys(ring: KeyRing) -> dict[str, Any]:
    return {"key_ids": sorted(ring.keys), "primary": ring.primary}


def _encryption(governance: Governance) -> Control:
    policy = governance.policy.encryption
    info: dict[str, Any] = {"classifications": policy.classifications, "key_env": policy.key_env}
    if not policy.classifications:
        return Control(
            control="encryption", state="off", detail="no classification is encrypted", info=info
        )
    if governance.keyring is None:
        return Control(
            control="encryption",
            state="degraded",
            detail=f"{policy.key_env} is not set: {_names(policy.classifications)} values are "
            "stored in plain text",
            info=info,
        )
    info.update(_keys(governance.keyring))
    return Control(
        control="encryption",
        state="on",
        detail=f"{_names(policy.classifications)} values encrypted at rest "
        f"(key {governance.keyring.primary})",
        info=info,
    )


async def _audit(ctx: ApiContext, governance: Governance) -> Control:
    policy = governance.policy.audit
    info: dict[str, Any] = {"key_env": policy.key_env}
    if not policy.enabled:
        return Control(
            control="audit", state="off", detail="the audit trail is disabled", info=info
        )
    if governance.audit_keys is None:
        return Control(
            control="audit",
            state="degraded",
            detail=f"{policy.key_env} is not set: audit records are not signed",
            info=info,
        )
    info.update(_keys(governance.audit_keys))
    if ctx.audit_status is None:
        return Control(
            control="audit",
            state="on",
            detail="signing key present; audit chain not checked",
            info=info,
        )
    try:
        status = await ctx.audit_status()
    except Exception as exc:  # a failing check is what this control reports
        return Control(
            control="audit",
            state="degraded",
            detail=f"the audit chain could not be checked ({type(exc).__name__})",
            info=info,
        )
    if status is None:
        return Control(
            control="audit",
            state="on",
            detail="signing key present; audit chain not checked",
            info=info,
        )
    info["chain"] = status
    verified = bool(status.get("verified"))
    detail = str(status.get("detail") or "")
    if not detail:
        records = status.get("records")
        anchor = status.get("anchor")
        anchored = (
            f"; anchored in {anchor['file']}"
            if anchor
            else "; not anchored outside the database (audit.anchor in the policy)"
        )
        detail = (
            f"audit chain verified up to record {records}{anchored}"
            if verified
            else "the audit chain does not verify"
        )
    return Control(
        control="audit", state="on" if verified else "degraded", detail=detail, info=info
    )


def _ssrf(governance: Governance) -> Control:
    http = governance.policy.http
    info = http.model_dump(mode="json")
    enforced = (
        http.deny_networks
        or http.deny_hosts
        or http.deny_private
        or http.deny_loopback
        or http.deny_reserved
    )
    if not enforced:
        return Control(
            control="ssrf_guard",
            state="off",
            detail="no deny list: the http handler may call any address",
            info=info,
        )
    parts = [f"{len(http.deny_networks)} networks", f"{len(http.deny_hosts)} hosts"]
    if http.deny_private:
        parts.append("private networks")
    if http.deny_loopback:
        parts.append("loopback")
    if http.deny_reserved:
        parts.append("unspecified, multicast, broadcast and reserved addresses")
    return Control(
        control="ssrf_guard",
        state="on",
        detail="the http handler refuses " + ", ".join(parts) + " (checked after DNS)",
        info=info,
    )


def _python(governance: Governance) -> Control:
    allowed = governance.python_allowlist
    info = {"allowed_modules": governance.policy.python.allowed_modules}
    if allowed is None:
        return Control(
            control="python_allowlist",
            state="off",
            detail="definitions are trusted here: any importable function may run",
            info=info,
        )
    modules = ", ".join(allowed) or "none"
    return Control(
        control="python_allowlist",
        state="on",
        detail=f"registered functions, and functions of these modules only: {modules}",
        info=info,
    )


def _templates(policy: GovernancePolicy) -> Control:
    limits = policy.templates
    return Control(
        control="template_limits",
        state="on",
        detail=f"templates render sandboxed, within {limits.timeout_seconds:g} s and "
        f"{limits.max_output_bytes} bytes",
        info=limits.model_dump(mode="json"),
    )


def _llm(policy: GovernancePolicy) -> Control:
    llm = policy.llm
    info = {
        "allowed_models": llm.allowed_models,
        "max_tokens": llm.max_tokens,
        "injection_phrases": len(llm.injection_phrases),
        "injection_patterns": len(llm.injection_patterns),
        "review_below_confidence": llm.review_below_confidence,
    }
    parts = []
    if llm.allowed_models:
        parts.append(f"models {', '.join(llm.allowed_models)}")
    if llm.max_tokens is not None:
        parts.append(f"at most {llm.max_tokens} tokens")
    if llm.injection_phrases or llm.injection_patterns:
        count = len(llm.injection_phrases) + len(llm.injection_patterns)
        parts.append(f"{count} prompt-injection phrases and patterns blocked")
    if llm.review_below_confidence is not None:
        parts.append(f"review below confidence {llm.review_below_confidence:g}")
    if not parts:
        return Control(
            control="llm_policy", state="off", detail="any model, prompt and size", info=info
        )
    return Control(control="llm_policy", state="on", detail="; ".join(parts), info=info)


def _retention(policy: GovernancePolicy) -> Control:
    days = policy.retention.days
    if days is None:
        return Control(
            control="retention",
            state="off",
            detail="executions are kept forever",
            info={"days": None},
        )
    return Control(
        control="retention",
        state="on",
        detail=f"executions older than {days} days are purged",
        info={"days": days},
    )


def _api_keys(ctx: ApiContext) -> Control:
    keys = ctx.settings.api_keys
    if not keys:
        return Control(
            control="api_keys",
            state="off",
            detail="no API key configured: the API is open to anyone who can reach it",
        )
    roles: dict[str, int] = {}
    for role in keys.values():
        roles[role] = roles.get(role, 0) + 1
    return Control(
        control="api_keys",
        state="on",
        detail=f"{len(keys)} API keys with roles",
        info={"keys_by_role": roles},
    )


def _required_headers(ctx: ApiContext) -> Control:
    names = required_headers(ctx)
    if not names:
        return Control(
            control="required_headers", state="off", detail="mutating calls need no header"
        )
    return Control(
        control="required_headers",
        state="on",
        detail=f"mutating calls must carry {', '.join(names)}",
        info={"headers": names},
    )


def _payload_limit(ctx: ApiContext) -> Control:
    limit = ctx.settings.max_body_bytes
    return Control(
        control="payload_limit",
        state="on",
        detail=f"request bodies over {limit} bytes are refused (413)",
        info={"max_body_bytes": limit},
    )


def _names(classifications: Sequence[str]) -> str:
    return "/".join(classifications) or "no"
