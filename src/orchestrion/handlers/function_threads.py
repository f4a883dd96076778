"""The worker threads that run blocking (``def``) functions of ``python`` nodes.

``asyncio.to_thread`` hands each call to the loop's default executor: a concurrent future with
its condition variable, a second asyncio future chained to it, and the callbacks that copy
one's state to the other, about 45 µs of CPU per call here against 19 µs for the trip itself
(the function queued, a thread woken, the result handed back to the loop). A chain of quick
``def`` functions pays it at every node. ``run_blocking`` makes that trip and nothing else:
the call, with a copy of the caller's context, goes on a queue that a few threads take from;
the result (or the exception) is set on an asyncio future by the loop. Results go back through
one list per loop (``_Returns``): the first wakes the loop (its thread-safe call, a write to
its self-pipe), and those that come before it has taken them go with it, so that a thousand
calls ending together are not a thousand wake-ups.

A thread is started only when none is idle, up to ``python_threads`` threads (``configure``,
16 by default); the other calls wait their turn in the queue. The pool is the python nodes'
own: nothing else of the service (its definition checks, file reads, DNS look-ups, template
renders) waits for it. The threads are not daemons: at exit Python waits for the calls under
way, as it did for the executor's, then each thread is told to end.

Python cannot stop a thread: cancelling the awaiting task (a cancel, the node's ``timeout``, a
shutdown) ends the attempt at once, but a function that never returns keeps its thread, and
enough of them hold back every python node. Each thread shows the call it runs, so ``stuck``
counts the calls whose attempt has ended while they run on (read when asked: nothing is
counted per call); ``/health`` reports them and is degraded while there is one, and
``orchestrion_python_threads_stuck`` exports the count. What to do about one: give the
function timeouts of its own (on its sockets, locks, subprocesses), register with
``blocking=False`` only functions that never block, and restart the process to get stuck
threads back.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import os
import queue
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_THREADS", "busy", "configure", "run_blocking", "size", "stuck"]

DEFAULT_THREADS = 16
"""Threads when nothing configured them (the ``python_threads`` setting's default)."""


class _Pool:
    """Threads taking calls from one queue (module docstring)."""

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # one release per thread waiting for a call
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # The future each thread settles now (None: idle), read by ``busy`` and ``stuck``.
        self.running: list[asyncio.Future[Any] | None] = []
        self._stopping = False
        register = getattr(threading, "_register_atexit", None)
        if register is not None:  # before the interpreter joins its threads
            register(self._stop)

    def submit(
        self, future: asyncio.Future[Any], call: Callable[[], Any], returns: _Returns
    ) -> None:
        if self._stopping:
            raise RuntimeError("cannot run a blocking function: the interpreter is exiting")
        self._calls.put((future, call, returns))
        if self._idle.acquire(blocking=False):
            return  # a waiting thread takes it
        with self._lock:
            if len(self._threads) < self.max_threads:
                slot = len(self._threads)
                self.running.append(None)
                thread = threading.Thread(
                    target=self._work, args=(slot,), name=f"orchestrion-function-{slot}"
                )
                thread.start()
                self._threads.append(thread)

    def _work(self, slot: int) -> None:
        calls = self._calls
        running = self.running
        while True:
            item = calls.get()
            if item is None:
                return
            future, call, returns = item
            del item
            running[slot] = future
            settle: Callable[[asyncio.Future[Any], Any], None]
            try:
                value, settle = call(), _settle
            except BaseException as exc:
                value, settle = exc, _settle_error
            running[slot] = None
            returns.put(future, settle, value)
            del future, call, value, returns  # nothing of the call outlives it here
            self._idle.release()

    def _stop(self) -> None:
        self._stopping = True
        with self._lock:
            for _ in self._threads:
                self._calls.put(None)


class _Returns:
    """The results on their way back to one event loop (module docstring)."""

    __slots__ = ("__weakref__", "_armed", "_items", "_lock", "loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._items: list[tuple[asyncio.Future[Any], Callable[..., None], Any]] = []
        self._lock = threading.Lock()
        self._armed = False  # the loop has been woken and will take what is here

    def put(self, future: asyncio.Future[Any], settle: Callable[..., None], value: Any) -> None:
        """Hand ``value`` back (any thread): ``settle(future, value)`` runs on the loop."""
        with self._lock:
            self._items.append((future, settle, value))
            if self._armed:
                return
            self._armed = True
        try:
            self.loop.call_soon_threadsafe(self._take)
        except RuntimeError:  # a closed loop: nobody waits for the results any more
            with self._lock:
                self._items.clear()
                self._armed = False

    def _take(self) -> None:
        with self._lock:
            items, self._items = self._items, []
            self._armed = False
        for future, settle, value in items:
            settle(future, value)


_Call = tuple[asyncio.Future[Any], Callable[[], Any], _Returns]
_returns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Returns]
_returns = weakref.WeakKeyDictionary()
_returns_lock = threading.Lock()


def _returns_of(loop: asyncio.AbstractEventLoop) -> _Returns:
    returns = _returns.get(loop)
    if returns is None:
        with _returns_lock:
            returns = _returns.get(loop)
            if returns is None:
                returns = _Returns(loop)
                # A loop without weak references: a list for each call.
                with contextlib.suppress(TypeError):
                    _returns[loop] = returns
    return returns


def _settle(future: asyncio.Future[Any], result: Any) -> None:
    if not future.done():  # not cancelled meanwhile
        future.set_result(result)


def _settle_error(future: asyncio.Future[Any], exc: BaseException) -> None:
    if future.done():
        return
    if isinstance(exc, StopIteration):  # a future refuses it, as a coroutine would
        exc = RuntimeError(f"the function raised StopIteration: {exc}")
    future.set_exception(exc)


_pool: _Pool | None = None
_pool_lock = threading.Lock()


def _forget_in_child() -> None:
    """A forked child has none of its parent's threads: it starts a pool of its own."""
    global _pool, _pool_lock, _returns, _returns_lock
    _pool = None
    _pool_lock = threading.Lock()
    _returns = weakref.WeakKeyDictionary()  # a lock held in the parent stays held here
    _returns_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)


_size = DEFAULT_THREADS


def configure(threads: int) -> None:
    """Let the pool grow to ``threads`` threads (threads already started stay)."""
    global _size
    if threads < 1:
        raise ValueError(f"python_threads must be at least 1, got {threads}")
    with _pool_lock:
        _size = threads
        if _pool is not None:
            _pool.max_threads = threads


def size() -> int:
    """How many threads the pool may have."""
    return _size


def busy() -> int:
    """Calls running in a thread now (stuck ones included)."""
    pool = _pool
    return 0 if pool is None else sum(1 for future in pool.running if future is not None)


def stuck() -> int:
    """Calls still running whose attempt has ended (cancelled, timed out)."""
    pool = _pool
    if pool is None:
        return 0
    return sum(1 for future in list(pool.running) if future is not None and future.done())


def _the_pool() -> _Pool:
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                _pool = _Pool(_size)
    return _pool


async def run_blocking(func: Callable[..., Any], /, **kwargs: Any) -> Any:
    """``func(**kwargs)`` in a worker thread, with the caller's context, as
    ``asyncio.to_thread`` would run it."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()
    context = contextvars.copy_context()
    _the_pool().submit(future, functools.partial(context.run, func, **kwargs), _returns_of(loop))
    return await future
