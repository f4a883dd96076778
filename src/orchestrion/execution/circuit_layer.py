"""The layer that guards calls to a downstream host with its circuit breaker.

Only calls that name a downstream host (``target_host``) are guarded: a handler without one
(noop, python) has nothing downstream to protect and would pay two round trips to the shared
state for nothing. A call its circuit refuses is not an attempt: the node waits
(``circuit_wait``) until the circuit lets a call through. A failure of the shared state
itself never changes a call's outcome: the breaker then fails open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from typing import Any

from pydantic import BaseModel

from orchestrion.core.reasons import WaitReason
from orchestrion.core.task_kinds import TaskKind
from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution.circuit import CircuitOpen, CircuitState, SharedCircuits, target_host
from orchestrion.execution.failures import retryable
from orchestrion.execution.layers import Attempt, Layer, Proceed
from orchestrion.handlers.base import Wait

__all__ = ["CircuitBreaking", "circuit_wait"]

logger = logging.getLogger("orchestrion.execution.executor")

_PROBE_POLL_SECONDS = 1.0  # a half-open circuit's probe may end any moment: look again soon


class CircuitBreaking(Layer):
    """Each guarded call asks ``circuits`` first, and reports to them how it ended."""

    __slots__ = ("circuits",)

    def __init__(self, circuits: SharedCircuits) -> None:
        self.circuits = circuits

    async def call(self, attempt: Attempt, proceed: Proceed) -> Any:
        config = attempt.config
        fields = config.__dict__ if isinstance(config, BaseModel) else config
        handler = attempt.spec.name
        target = target_host(handler, fields if isinstance(fields, dict) else {})
        if target is None:
            return await proceed(attempt)
        waiting = await self._before(handler, target, attempt.task)
        if waiting is not None:
            return waiting
        try:
            output = await proceed(attempt)
        except BaseException as exc:
            # Cancellation is ours, not the downstream's: not recorded (a probe cut short is
            # presumed lost after the probe timeout).
            if not isinstance(exc, asyncio.CancelledError):
                await self._after(handler, target, not retryable(exc))
            raise
        await self._after(handler, target, True)
        return output

    async def _before(self, handler: str, target: str, task: TaskMessage) -> Wait | None:
        """None when the call may go through; a ``Wait`` for the circuit when it may not.

        Waiting for a circuit is not an attempt: the node waits (a durable timer, the same
        attempt) until the circuit lets a call through, instead of failing fast and spending
        its retries while the downstream recovers; within its timeout, counted from the first
        refusal: past it, the attempt fails with ``circuit_open`` (transient: its retry
        policy applies). A compensation fails fast."""
        try:
            await self.circuits.before(handler, target)
        except CircuitOpen as exc:
            if task.kind != TaskKind.RUN:
                raise  # a transient failure with category circuit_open
            wait = circuit_wait(exc)
            if task.timeout and wait.wake_at is not None:
                since = await self._waiting_since(task)
                if wait.wake_at - since > task.timeout:
                    raise
            return wait
        except Exception as exc:
            # The breaker's store is down: fail open, as without breakers, rather than fail
            # every call for a reason that is not the downstream's.
            logger.warning(
                "circuit breaker of %s not consulted: %s: %s", handler, type(exc).__name__, exc
            )
            return None
        woken = task.wait_result if isinstance(task.wait_result, dict) else {}
        if woken.get("reason") == WaitReason.CIRCUIT:
            with contextlib.suppress(Exception):  # it expires on its own
                await self.circuits.done_waiting(task.idempotency_key)
        return None

    async def _waiting_since(self, task: TaskMessage) -> float:
        now = time.time()
        try:
            return await self.circuits.waiting_since(task.idempotency_key, now)
        except Exception as exc:  # not recorded: this refusal counts as the first
            logger.warning("circuit wait of %s not recorded: %s", task.idempotency_key, exc)
            return now

    async def _after(self, handler: str, target: str, ok: bool) -> None:
        # The call has happened: failing to record it must not change its outcome (a success
        # turned into a failure would run the call again).
        try:
            await self.circuits.after(handler, target, ok)
        except Exception as exc:
            logger.warning(
                "circuit breaker of %s not updated: %s: %s", handler, type(exc).__name__, exc
            )


def circuit_wait(refused: CircuitOpen) -> Wait:
    """The wait of a node whose call ``refused`` was refused by its circuit: until the circuit
    half-opens (open), or a moment later (half-open, its probe in flight), with a little
    jitter so that the nodes waiting on one circuit do not all come back at once."""
    delay = refused.retry_in
    if refused.state is not CircuitState.OPEN:
        delay = min(delay, _PROBE_POLL_SECONDS)
    delay += random.uniform(0.0, 0.1 + delay * 0.1)
    return Wait(
        WaitReason.CIRCUIT,
        time.time() + delay,
        {"handler": refused.handler, "host": refused.host, "circuit": refused.state.value},
    )
