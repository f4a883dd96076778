"""The user functions the ``python`` variants of the workloads run, one call per node.

Registered by name for the ``python`` handler when this module is imported (bench/run.py and
bench/peers/orchestrion_runner.py import it before an engine starts). Each returns the value
it is given, as the no-op handler does, so a chain passes its output on.
"""

from __future__ import annotations

import contextlib
from typing import Any

from orchestrion import function

__all__ = [
    "ASYNC",
    "INLINE",
    "INLINE_DEF",
    "QUICK",
    "SYNC",
    "pass_on",
    "pass_on_inline",
    "pass_on_inline_def",
    "pass_on_quick",
    "pass_on_sync",
]

ASYNC = "bench_pass_on"
SYNC = "bench_pass_on_sync"
QUICK = "bench_pass_on_quick"
INLINE = "bench_pass_on_inline"
INLINE_DEF = "bench_pass_on_inline_def"


@function(ASYNC, replace=True)
async def pass_on(value: Any = None) -> Any:
    """An ``async def`` node: returns its ``value`` param."""
    return value


@function(SYNC, replace=True)
def pass_on_sync(value: Any = None) -> Any:
    """A ``def`` node: returns its ``value`` param (run in a worker thread by default)."""
    return value


def pass_on_quick(value: Any = None) -> Any:
    """A ``def`` node declared non-blocking: called on the event loop, no thread."""
    return value


async def pass_on_inline(value: Any = None) -> Any:
    """An ``async def`` node declared free of effects outside the process: run inside the
    engine's turn, its output committed with what follows it."""
    return value


def pass_on_inline_def(value: Any = None) -> Any:
    """A ``def`` node declared free of effects outside the process: run inside the engine's
    turn, as the ``async def`` one is."""
    return value


# A tree from before a declaration (A/B runs) has no such variant.
with contextlib.suppress(TypeError):
    function(QUICK, replace=True, blocking=False)(pass_on_quick)
with contextlib.suppress(TypeError):
    function(INLINE, replace=True, inline=True)(pass_on_inline)
with contextlib.suppress(TypeError):
    function(INLINE_DEF, replace=True, inline=True)(pass_on_inline_def)
