"""Retry delays and retry decisions (orchestrion.core.backoff), table-driven."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrion.core.backoff import retry_delay, should_retry
from orchestrion.definition.model import RetryPolicy


def policy(**fields: Any) -> RetryPolicy:
    return RetryPolicy.model_validate(fields)


EXACT = {"jitter": "none", "initial_delay": 1.0, "multiplier": 2.0, "max_delay": 30.0}

# (policy fields, attempt that failed, rand, expected delay before the next attempt)
DELAYS = [
    # no jitter: initial * multiplier ** (attempt - 1), capped at max_delay
    (EXACT, 1, 0.7, 1.0),
    (EXACT, 2, 0.7, 2.0),
    (EXACT, 3, 0.7, 4.0),
    (EXACT, 4, 0.7, 8.0),
    (EXACT, 5, 0.7, 16.0),
    (EXACT, 6, 0.7, 30.0),  # 32 capped
    (EXACT, 7, 0.7, 30.0),
    (EXACT, 50, 0.7, 30.0),
    (EXACT, 0, 0.7, 1.0),  # attempt 0 is treated as the first
    ({**EXACT, "multiplier": 3.0, "max_delay": 10.0}, 3, 0.0, 9.0),
    ({**EXACT, "multiplier": 3.0, "max_delay": 10.0}, 4, 0.0, 10.0),
    ({**EXACT, "multiplier": 1.0}, 9, 0.5, 1.0),  # constant backoff
    ({**EXACT, "initial_delay": 0.0, "max_delay": 0.0}, 5, 0.5, 0.0),  # immediate retry
    ({**EXACT, "initial_delay": 5.0, "max_delay": 5.0}, 3, 0.5, 5.0),
    ({**EXACT, "multiplier": 100.0, "max_delay": 60.0}, 10_000, 0.5, 60.0),  # no overflow
    ({**EXACT, "initial_delay": "250ms", "max_delay": "1m"}, 3, 0.5, 1.0),  # durations
    # full jitter: uniformly scaled by rand in [0, 1)
    ({**EXACT, "jitter": "full"}, 1, 0.0, 0.0),
    ({**EXACT, "jitter": "full"}, 1, 0.5, 0.5),
    ({**EXACT, "jitter": "full"}, 3, 0.25, 1.0),
    ({**EXACT, "jitter": "full"}, 6, 0.5, 15.0),  # jitter applies to the capped delay
    ({**EXACT, "jitter": "full"}, 10_000, 0.5, 15.0),
    ({}, 1, 0.5, 0.25),  # defaults: 0.5s initial, x2, 30s cap, full jitter
    ({}, 2, 1.0 - 2**-53, 1.0 - 2**-53),
]


@pytest.mark.parametrize(("fields", "attempt", "rand", "expected"), DELAYS)
def test_retry_delay(fields: dict[str, Any], attempt: int, rand: float, expected: float) -> None:
    assert retry_delay(policy(**fields), attempt, rand) == pytest.approx(expected)


@settings(max_examples=200, deadline=None)
@given(
    initial=st.floats(0, 100),
    extra=st.floats(0, 1000),
    multiplier=st.floats(1, 100),
    attempt=st.integers(0, 2000),
    rand=st.floats(0, 1, exclude_max=True),
)
def test_full_jitter_stays_within_zero_and_the_capped_delay(
    initial: float, extra: float, multiplier: float, attempt: int, rand: float
) -> None:
    fields = {"initial_delay": initial, "max_delay": initial + extra, "multiplier": multiplier}
    capped = retry_delay(policy(**fields, jitter="none"), attempt, rand)
    jittered = retry_delay(policy(**fields, jitter="full"), attempt, rand)
    assert math.isfinite(capped)
    assert min(initial, initial + extra) <= capped <= initial + extra
    assert 0.0 <= jittered <= capped


@settings(max_examples=100, deadline=None)
@given(attempt=st.integers(1, 60))
def test_exponential_delays_never_decrease(attempt: int) -> None:
    p = policy(**EXACT)
    assert retry_delay(p, attempt, 0.5) <= retry_delay(p, attempt + 1, 0.5)


DEFAULT: dict[str, Any] = {}  # max_attempts 3, retry_on ["transient"]

# (policy fields, attempt that failed, error category, transient, retried?)
DECISIONS = [
    (DEFAULT, 1, "network", True, True),
    (DEFAULT, 2, "network", True, True),
    (DEFAULT, 3, "network", True, False),  # 3 attempts made: that was the last
    (DEFAULT, 4, "network", True, False),
    (DEFAULT, 1, "validation", False, False),  # permanent
    (DEFAULT, 1, "timeout", False, False),
    (DEFAULT, 1, "timeout", True, True),
    (DEFAULT, 1, "policy_violation", True, False),  # never, even if flagged transient
    ({"max_attempts": 1}, 1, "network", True, False),
    ({"max_attempts": 1, "retry_on": ["all"]}, 1, "validation", False, False),
    ({"max_attempts": 5}, 4, "network", True, True),
    ({"max_attempts": 5}, 5, "network", True, False),
    ({"retry_on": ["all"]}, 1, "validation", False, True),
    ({"retry_on": ["all"]}, 1, "network", True, True),
    ({"retry_on": ["all"]}, 2, "anything", False, True),
    ({"retry_on": ["all"]}, 3, "validation", False, False),  # attempts still run out
    ({"retry_on": ["all"]}, 1, "policy_violation", False, False),
    ({"retry_on": ["all"]}, 1, "policy_violation", True, False),
    ({"retry_on": ["timeout"]}, 1, "timeout", False, True),  # a named category
    ({"retry_on": ["timeout"]}, 1, "network", True, False),  # "transient" not listed
    ({"retry_on": ["transient", "timeout"]}, 1, "timeout", False, True),
    ({"retry_on": ["transient", "timeout"]}, 1, "network", True, True),
    ({"retry_on": ["transient", "timeout"]}, 1, "validation", False, False),
    ({"retry_on": ["validation"]}, 1, "validation", False, True),
    ({"retry_on": ["policy_violation"]}, 1, "policy_violation", False, False),
    ({"retry_on": []}, 1, "network", True, False),
]


@pytest.mark.parametrize(("fields", "attempt", "category", "transient", "expected"), DECISIONS)
def test_should_retry(
    fields: dict[str, Any], attempt: int, category: str, transient: bool, expected: bool
) -> None:
    assert should_retry(policy(**fields), attempt, category, transient) is expected


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 7])
@pytest.mark.parametrize("retry_on", [["transient"], ["all"]])
def test_max_attempts_counts_every_attempt(max_attempts: int, retry_on: list[str]) -> None:
    p = policy(max_attempts=max_attempts, retry_on=retry_on)
    retried = [n for n in range(1, max_attempts + 5) if should_retry(p, n, "network", True)]
    assert retried == list(range(1, max_attempts))
