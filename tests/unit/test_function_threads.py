"""The worker threads of blocking ``python`` functions: what ``asyncio.to_thread`` gave."""

from __future__ import annotations

import asyncio
import contextvars
import os
import subprocess
import sys
import threading
import time

import pytest

from orchestrion.handlers.function_threads import run_blocking

PROBE: contextvars.ContextVar[str] = contextvars.ContextVar("probe", default="unset")


async def test_a_call_runs_in_another_thread_with_the_callers_context() -> None:
    PROBE.set("caller")

    def call(value: int) -> tuple[int, int, str]:
        seen = PROBE.get()
        PROBE.set("changed in the thread")  # its own copy: the caller's stays
        return value, threading.get_ident(), seen

    value, thread, seen = await run_blocking(call, value=7)
    assert (value, seen) == (7, "caller")
    assert thread != threading.get_ident()
    assert PROBE.get() == "caller"


async def test_an_exception_comes_back_to_the_caller() -> None:
    def fails() -> None:
        raise KeyError("missing")

    with pytest.raises(KeyError, match="missing"):
        await run_blocking(fails)

    def stops() -> None:
        raise StopIteration

    with pytest.raises(RuntimeError, match="StopIteration"):
        await run_blocking(stops)


async def test_blocking_calls_run_at_the_same_time() -> None:
    barrier = threading.Barrier(4, timeout=5)
    # Each waits for the other three: they finish only if all four run at once.
    assert await asyncio.gather(*(run_blocking(barrier.wait) for _ in range(4))) is not None


async def test_a_cancelled_caller_leaves_the_call_to_finish_and_the_pool_serves_on() -> None:
    release = threading.Event()
    finished = threading.Event()

    def slow() -> str:
        release.wait(5)
        finished.set()
        return "late"

    waiting = asyncio.ensure_future(run_blocking(slow))
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    assert finished.wait(5)
    assert await run_blocking(lambda: "next") == "next"


def test_the_process_exits_once_its_calls_are_done() -> None:
    script = (
        "import asyncio, time\n"
        "from orchestrion.handlers.function_threads import run_blocking\n"
        "async def main():\n"
        "    def nap(): time.sleep(0.01)\n"
        "    print(await run_blocking(nap) is None, flush=True)\n"
        "asyncio.run(main())\n"
    )
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
    assert time.monotonic() - started < 30


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork here")
def test_a_forked_child_runs_blocking_functions_on_threads_of_its_own() -> None:
    script = (
        "import asyncio, os\n"
        "from orchestrion.handlers.function_threads import run_blocking\n"
        "async def one():\n"
        "    return await run_blocking(lambda: os.getpid())\n"
        "parent = asyncio.run(one())\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    os._exit(0 if asyncio.run(asyncio.wait_for(one(), 10)) == os.getpid() else 3)\n"
        "_, status = os.waitpid(child, 0)\n"
        "print(os.waitstatus_to_exitcode(status), flush=True)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "0"
