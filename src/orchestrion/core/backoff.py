"""Retry delays: exponential backoff with an upper bound and optional full jitter. Pure."""

from __future__ import annotations

from orchestrion.definition.model import RetryPolicy
from orchestrion.errors import ErrorCategory

__all__ = ["retry_delay", "should_retry"]

# A policy block or a person's rejection will not change by asking again.
_NEVER_RETRIED = frozenset({ErrorCategory.POLICY_VIOLATION, ErrorCategory.REJECTED})


def retry_delay(policy: RetryPolicy, attempt: int, rand: float) -> float:
    """Delay in seconds before the attempt after ``attempt`` (1-based).

    ``rand`` is a uniform draw from [0, 1); full jitter scales the capped exponential delay by
    it (the AWS "full jitter" scheme), which spreads retries of many failing nodes apart.
    """
    exponent = max(0, attempt - 1)
    # Cap the exponent so huge attempt counts cannot overflow a float.
    base = policy.initial_delay * (policy.multiplier ** min(exponent, 64))
    capped = min(policy.max_delay, base)
    if policy.jitter == "full":
        return capped * rand
    return capped


def should_retry(policy: RetryPolicy, attempt: int, category: str, transient: bool) -> bool:
    """Whether a failure of ``category`` on ``attempt`` earns another attempt."""
    if attempt >= policy.max_attempts:
        return False
    if category in _NEVER_RETRIED:
        return False
    retry_on = policy.retry_on
    if "all" in retry_on:
        return True
    if category in retry_on:
        return True
    return transient and "transient" in retry_on
