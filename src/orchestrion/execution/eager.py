"""Starting a coroutine as a task that runs its first step at once, in the caller's turn.

An attempt that completes without suspending (an ``async def`` that awaits nothing slow, a
function declared non-blocking) then costs its caller no wait: its outcome is known when
``start_eagerly`` returns, without a trip round the event loop, as with Python 3.12's eager
tasks. The coroutine runs as the task it belongs to (``asyncio.current_task()`` is that task
during the first step, so ``asyncio.timeout`` and cancel scopes bind to it), in a copy of the
caller's context; what is left after its first suspension runs in that task as usual.
"""

from __future__ import annotations

import asyncio
import contextvars

# asyncio's own switch of the current task, as its eager tasks use it (3.12+): Python 3.11
# has no eager task factory, and the first step must run as the new task, not the caller.
from asyncio.tasks import _enter_task, _leave_task
from collections.abc import Coroutine, Generator
from typing import Any

__all__ = ["start_eagerly"]


class _Eager:
    """A coroutine whose first step ran eagerly: what it yielded then, or that it ended."""

    __slots__ = ("coro", "finished", "first")

    def __init__(self, coro: Coroutine[Any, Any, None]) -> None:
        self.coro = coro
        self.first: Any = None
        self.finished = False

    def __await__(self) -> Generator[Any, Any, None]:
        coro = self.coro
        value, self.first = self.first, None
        while True:
            # The future the coroutine yielded keeps its "blocking" mark, so the task waits
            # on it exactly as if the coroutine had yielded it to the task itself.
            try:
                sent = yield value
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # a cancellation thrown into the task
                try:
                    value = coro.throw(exc)
                except StopIteration:
                    return
            else:
                try:
                    value = coro.send(sent)
                except StopIteration:
                    return


async def _rest(eager: _Eager) -> None:
    if not eager.finished:
        await eager


def start_eagerly(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None] | None:
    """Run ``coro`` as a new task up to its first suspension, now; None when it ended
    there, else its task (which runs the rest)."""
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    eager = _Eager(coro)
    if loop.get_task_factory() is None:  # what ``create_task`` does then, less its wrapping
        task: asyncio.Task[None] = asyncio.Task(_rest(eager), loop=loop, name=name, context=context)
    else:
        task = loop.create_task(_rest(eager), name=name, context=context)
    caller = asyncio.current_task(loop)
    if caller is not None:
        _leave_task(loop, caller)
    _enter_task(loop, task)
    try:
        eager.first = context.run(coro.send, None)
    except StopIteration:
        eager.finished = True  # the task's own step, when it comes, ends at once
    except BaseException:
        eager.finished = True
        raise
    finally:
        _leave_task(loop, task)
        if caller is not None:
            _enter_task(loop, caller)
    if eager.finished:
        return None
    # Cancelled before its first step, the task never reaches the coroutine: close it then.
    task.add_done_callback(lambda _task: coro.close())
    return task
