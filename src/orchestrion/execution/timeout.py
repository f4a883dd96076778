"""The layer that ends a handler call at the node's timeout (``NodeTimeout``, transient)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

from orchestrion.execution.failures import NodeTimeout
from orchestrion.execution.layers import Attempt, Layer, Proceed

__all__ = ["Timeout"]


class Timeout(Layer):
    """The awaited call of an attempt whose node has a timeout ends when it runs out."""

    __slots__ = ()

    def call(self, attempt: Attempt, proceed: Proceed) -> Awaitable[Any]:
        seconds = attempt.task.timeout
        if not seconds:
            return proceed(attempt)  # no deadline: no coroutine of its own either
        return self._within(seconds, attempt, proceed)

    async def _within(self, seconds: float, attempt: Attempt, proceed: Proceed) -> Any:
        try:
            async with asyncio.timeout(seconds):
                return await proceed(attempt)
        except TimeoutError as exc:
            raise NodeTimeout(seconds) from exc
