"""Timers of live executions: retries, delays and wake-ups, and the execution deadline.

A timer fires by posting an event to the loop (``TimerFired``, ``ExecutionTimedOut``); it is
armed only after the turn that asked for it is committed, and disarmed when the execution
leaves the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from orchestrion.core.events import Event, ExecutionTimedOut, ScheduleTimer, TimerFired
from orchestrion.engine.live import LiveExecution

__all__ = ["arm_deadline", "arm_timer", "disarm"]

Post = Callable[[str, Event], None]


def arm_timer(live: LiveExecution, command: ScheduleTimer, post: Post) -> None:
    """Arm the timer ``command`` asks for, in place of one of the same key."""
    key = (command.node, command.attempt, command.kind)
    old = live.timers.pop(key, None)
    if old is not None:
        old.cancel()
    delay = max(0.0, command.fire_at - time.time())
    execution_id = live.record.id

    def fire() -> None:
        live.timers.pop(key, None)
        post(execution_id, TimerFired(command.node, command.attempt, time.time(), command.kind))

    live.timers[key] = asyncio.get_running_loop().call_later(delay, fire)


def arm_deadline(live: LiveExecution, started_at: float, post: Post) -> None:
    """Time the execution out ``timeout`` seconds after ``started_at``, if it has one."""
    timeout = live.compiled.plan.spec.timeout
    if timeout is None or live.machine.finished:
        return
    if live.deadline is not None:
        live.deadline.cancel()
    delay = max(0.0, started_at + timeout - time.time())
    execution_id = live.record.id
    live.deadline = asyncio.get_running_loop().call_later(
        delay, lambda: post(execution_id, ExecutionTimedOut(time.time()))
    )


def disarm(live: LiveExecution) -> None:
    """Cancel every timer of ``live`` and its deadline."""
    for handle in live.timers.values():
        handle.cancel()
    live.timers.clear()
    if live.deadline is not None:
        live.deadline.cancel()
        live.deadline = None
