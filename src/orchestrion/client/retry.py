"""How long a client waits before sending a rate-limited (429) call again; no I/O.

The server refuses a rate-limited call before doing anything with it, so sending it again is
safe whatever its method. The wait is the server's ``Retry-After`` when it gives one, else an
exponential backoff (0.5 s, 1 s, 2 s... up to 30 s), plus a random jitter of up to a quarter of
that, so clients refused together do not all come back in the same instant. A server asking
for more than ``max_wait`` seconds, or ``retries`` refusals in a row, end the retries: the
``RateLimited`` error then reaches the caller.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from orchestrion.core.events import retry_after_seconds

__all__ = ["RateLimitRetry"]

_BASE = 0.5
_CAP = 30.0


@dataclass(frozen=True)
class RateLimitRetry:
    """``retries`` further tries of a 429 call, each after ``delay`` seconds."""

    retries: int = 10
    max_wait: float = 60.0
    jitter: Callable[[float], float] = field(default=lambda d: random.uniform(0, d / 4))

    def delay(self, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before try ``attempt + 1`` (``attempt`` counts from 0), or None
        when ``response`` is not a 429 or the call should not be tried again."""
        if response.status_code != 429 or attempt >= self.retries:
            return None
        asked = retry_after_seconds(response.headers.get("retry-after"))
        wait = asked if asked is not None else min(_CAP, _BASE * 2**attempt)
        if wait > self.max_wait:
            return None
        return wait + self.jitter(max(wait, _BASE))
