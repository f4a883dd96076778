"""The layer that ends a handler call at the node's timeout (``NodeTimeout``, transient)."""

from __future__ import annotations

import asyncio
from typing import Any

from orchestrion.execution.failures import NodeTimeout
from orchestrion.execution.layers import Attempt, Layer, Proceed

__all__ = ["Timeout"]


class Timeout(Layer):
    """The awaited call of an attempt whose node has a timeout ends when it runs out."""

    __slots__ = ()

    async def call(self, attempt: Attempt, proceed: Proceed) -> Any:
        seconds = attempt.task.timeout
        if not seconds:
            return await proceed(attempt)
        try:
            async with asyncio.timeout(seconds):
                return await proceed(attempt)
        except TimeoutError as exc:
            raise NodeTimeout(seconds) from exc
