"""The threads that render heavy templates, off the event loop.

A template that is more than a light expression (``orchestrion.templates.weight``) may run up
to the policy's ``templates.timeout_seconds``; it runs here, so that the event loop goes on
(``orchestrion serve`` sets a short switch interval: a thread holding the GIL lets the loop
run every half millisecond). The pool is the engine's own, not asyncio's default executor,
and small: renders that time out cannot starve the DNS look-ups and file reads that share
the default executor, and a burst of them competes with the loop for the GIL through a few
threads at most (the others wait their turn, not the loop).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["RENDER_THREADS", "off_loop"]

RENDER_THREADS = 2
"""How many renders may run at once, each in a thread of its own."""

_P = ParamSpec("_P")
_T = TypeVar("_T")

_pool: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(RENDER_THREADS, thread_name_prefix="orchestrion-render")
    return _pool


async def off_loop(func: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """``func(*args, **kwargs)`` in a render thread, with the caller's context (template
    limits, log fields), as ``asyncio.to_thread`` does with the default executor."""
    context = contextvars.copy_context()
    call = functools.partial(context.run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_executor(), call)
