"""How a command that drives executions hands over: to a person, or to the next start.

At an approval, ``run``, ``resume``, ``retry``, ``approve`` and ``reject`` stop and print the
command that decides each waiting node, its own or a child's (exit 4). On SIGTERM they stop
as on Ctrl-C: running attempts get the grace period, the leases are given back, and
``orchestrion resume`` carries on at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Iterable
from typing import Any, TypeVar

from rich.console import Console
from rich.markup import escape

__all__ = ["Decision", "graceful_on_sigterm", "print_decisions"]

_T = TypeVar("_T")

Decision = tuple[str, str]
"""(execution id, node id) of a node waiting for approve/reject."""


def print_decisions(err: Console, decisions: Iterable[Decision], where: str) -> None:
    """One line per waiting node with the command that decides it (``where``: --db/--server)."""
    for execution_id, node_id in decisions:
        err.print(
            f"[yellow]waiting:[/] node '{escape(node_id)}' needs a decision: "
            f"orchestrion approve {escape(execution_id)} {escape(node_id)}{escape(where)} "
            f"(or: orchestrion reject ...)",
            highlight=False,
            markup=True,
            soft_wrap=True,  # a command to copy must stay on one line
        )


async def graceful_on_sigterm(work: Awaitable[_T]) -> _T:
    """Await ``work`` with SIGTERM handled as asyncio handles SIGINT (the main task is
    cancelled, so ``async with Engine`` stops gracefully, then KeyboardInterrupt is raised)."""
    on_sigint: Any = signal.getsignal(signal.SIGINT)
    if callable(on_sigint) and on_sigint is not signal.default_int_handler:
        before: Any = None
        # Only the main thread may set handlers; asyncio set none elsewhere (an embedding).
        with contextlib.suppress(ValueError):
            before = signal.signal(signal.SIGTERM, on_sigint)
        try:
            return await work
        finally:
            if before is not None:  # the handler belongs to this run's event loop only
                signal.signal(signal.SIGTERM, before)
    # asyncio installs its SIGINT handler only where SIGINT has Python's default one: a
    # background job of a shell or a script starts with SIGINT ignored, and gets none. SIGTERM
    # is what stops such a job, so it gets the same treatment here, on this loop.
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        stopped = True
        if main is not None:
            main.cancel()

    installed = False
    with contextlib.suppress(ValueError, RuntimeError, NotImplementedError):
        loop.add_signal_handler(signal.SIGTERM, stop)
        installed = True
    try:
        return await work
    except asyncio.CancelledError:
        if stopped:
            raise KeyboardInterrupt from None
        raise
    finally:
        if installed:
            loop.remove_signal_handler(signal.SIGTERM)
