"""Why a node waits, and why it was skipped: the values of ``wait_reason``.

A node's ``wait_reason`` names its wait while it waits and, once it is skipped, why it was
skipped. The store keeps the text; as ``StrEnum`` members these equal their strings, so a
value read back compares equal. The wait reasons are those the engine and the built-in
handlers give; a custom handler's ``Wait`` may name its own, so fields that carry a wait
reason stay ``str``.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DECIDABLE_WAITS", "DECISION_SKIPS", "SkipReason", "WaitReason"]


class WaitReason(StrEnum):
    """Why a node in state ``waiting`` waits."""

    RETRY = "retry"  # a failed attempt's backoff: not a wait on a person or a timer
    TIMER = "timer"  # a delay node
    APPROVAL = "approval"  # a person approves or rejects
    REVIEW = "review"  # a person reviews an llm node's answer
    CHILD = "child"  # a workflow node's child execution runs
    CIRCUIT = "circuit"  # the handler's circuit is open
    ROUTING = "routing"  # a routing rule on the run waits to evaluate its condition again


class SkipReason(StrEnum):
    """Why a node was skipped."""

    CONDITION_FALSE = "condition_false"  # its own ``when:`` was false
    BRANCH_NOT_TAKEN = "branch_not_taken"  # a condition parent chose other children
    UPSTREAM_FAILED = "upstream_failed"
    UPSTREAM_SKIPPED = "upstream_skipped"
    NO_UPSTREAM_SUCCESS = "no_upstream_success"  # ``one_success`` and none succeeded
    NO_UPSTREAM_FAILURE = "no_upstream_failure"  # ``one_failed`` and none failed
    RUN_ENDED = "run_ended"  # a routing rule on the run whose condition never held


DECIDABLE_WAITS = frozenset({WaitReason.APPROVAL, WaitReason.REVIEW})
"""Waits that a person ends by a decision (approve, reject, review)."""

DECISION_SKIPS = frozenset({SkipReason.BRANCH_NOT_TAKEN, SkipReason.CONDITION_FALSE})
"""Skips that a node's own decision made (not a failure's consequence): a retry keeps them."""
