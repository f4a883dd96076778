"""No secret in the governance policy: every caller with the viewer role reads it.

``GET /health/governance`` shows the policy in force to read-only auditors, so the loader
refuses what would put a credential there, with a message naming the field and where the
credential goes instead:

- a URL (``audit.anchor.webhook``, ``llm.providers.<p>.base_url``) with user info
  (``https://user:pass@host``) or a query parameter named like a credential (``?token=``,
  ``?api_key=``, ``?sig=``...);
- an llm provider header named like a credential (``Authorization``, ``x-api-key``,
  ``Cookie``...) or whose value looks like one (``Bearer ...``, ``sk-...``, a JWT): a
  provider's key is read from the environment variable its ``api_key_env`` names, and sent
  in the header its ``auth_header`` and ``auth_scheme`` say.

``shown_policy`` is the route's second line of defence: URLs without user info or query
values, header values replaced by ``***``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, urlsplit, urlunsplit

if TYPE_CHECKING:
    from orchestrion.governance.policy import GovernancePolicy

__all__ = ["HIDDEN", "check_headers", "check_url", "hidden_url", "shown_policy"]

HIDDEN = "***"
_PUBLIC = "every viewer can read the policy at GET /health/governance"
_CREDENTIAL_NAME = re.compile(
    r"pass|pwd|secret|token|key|auth|sig|credential|session|cookie|bearer", re.IGNORECASE
)
# Values that are credentials whatever the header is called: an auth scheme and its token,
# the prefixes of common API keys, a JSON Web Token.
_CREDENTIAL_VALUE = re.compile(
    r"^\s*(?:bearer|basic|token|digest)\s+\S|^(?:sk|rk|pk)[-_]|^gh[pousr]_|^xox[abprs]-"
    r"|^AKIA[0-9A-Z]{8}|^eyJ[\w-]+\.",
    re.IGNORECASE,
)


def check_url(url: str, instead: str) -> str:
    """``url``, or a ``ValueError`` when it holds a credential; ``instead`` says where the
    credential belongs."""
    parts = urlsplit(url)
    if "@" in parts.netloc:
        raise ValueError(
            f"a URL in the policy must not hold credentials (user:password@host): {_PUBLIC}; "
            f"{instead}"
        )
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if _CREDENTIAL_NAME.search(name):
            raise ValueError(
                f"query parameter {name!r} looks like a credential, which does not belong in"
                f" the policy: {_PUBLIC}; {instead}"
            )
    return url


def check_headers(headers: dict[str, str]) -> dict[str, str]:
    """``headers`` of an llm provider, or a ``ValueError`` naming one that holds a
    credential."""
    for name, value in headers.items():
        if _CREDENTIAL_NAME.search(name) or _CREDENTIAL_VALUE.search(value):
            raise ValueError(
                f"header {name!r} looks like it carries a credential, which does not belong"
                f" in the policy: {_PUBLIC}; put the credential in an environment variable,"
                f" name it with api_key_env, and send it in this header with"
                f' auth_header: {name} (and auth_scheme: "" to send the value alone)'
            )
    return headers


def hidden_url(url: str | None) -> str | None:
    """``url`` without user info, and with each query value replaced by ``***``."""
    if url is None:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return HIDDEN
    host = parts.netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}={HIDDEN}" for name, _ in parse_qsl(parts.query, keep_blank_values=True)
    )
    return urlunsplit((parts.scheme, host, parts.path, query, ""))


def shown_policy(policy: GovernancePolicy) -> GovernancePolicy:
    """``policy`` as ``GET /health/governance`` shows it: URLs and header values hidden as
    above, whatever the loader let through (a policy built in code is not checked by it)."""
    anchor = policy.audit.anchor
    audit = policy.audit.model_copy(
        update={"anchor": anchor.model_copy(update={"webhook": hidden_url(anchor.webhook)})}
    )
    providers = {
        name: provider.model_copy(
            update={
                "base_url": hidden_url(provider.base_url),
                "headers": dict.fromkeys(provider.headers, HIDDEN),
            }
        )
        for name, provider in policy.llm.providers.items()
    }
    llm = policy.llm.model_copy(update={"providers": providers})
    return policy.model_copy(update={"audit": audit, "llm": llm})
