"""What node log capture costs an attempt: the executor alone, capture on against off.

    .venv/bin/python bench/node_logs.py                  # 5 rounds of 20,000 attempts each
    .venv/bin/python bench/node_logs.py --rounds 9 --attempts 50000

Each round times ``NodeExecutor.execute`` (the awaited path: http, llm and python nodes) of a
handler that logs nothing, with capture off (``logs=None``) and on (the default limits), the
two interleaved round by round in one process (alternating which goes first); then a handler
logging one INFO line per attempt, capture on, to price a captured line (record made, kept,
masked, reported). No engine, no store: what is timed is the executor, its layers and the
event sink (a list append). Medians over rounds, in microseconds per attempt.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from orchestrion.core.events import Event
from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution.executor import NodeExecutor
from orchestrion.execution.log_capture import LogLimits
from orchestrion.governance.masking import Masker
from orchestrion.handlers.base import Controls, HandlerSpec, NodeContext, Resources
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry

log = logging.getLogger("bench.node_logs")


async def _silent(ctx: NodeContext, config: Any) -> Any:
    return None


async def _one_line(ctx: NodeContext, config: Any) -> Any:
    log.info("attempt %d of node %s", ctx.attempt, ctx.node_id)
    return None


def _executor(limits: LogLimits | None) -> NodeExecutor:
    registry = HandlerRegistry(
        [*builtin_specs(), HandlerSpec("silent", _silent), HandlerSpec("one_line", _one_line)]
    )
    return NodeExecutor(registry, Resources(Controls.unrestricted()), logs=limits)


async def _time(executor: NodeExecutor, handler: str, attempts: int) -> float:
    events: list[tuple[str, Event]] = []

    def sink(execution_id: str, event: Event) -> None:
        events.append((execution_id, event))

    tasks = [
        TaskMessage("e", f"n{i}", 1, handler, {}, {}, {}, idempotency_key="k")
        for i in range(attempts)
    ]
    started = time.perf_counter()
    for task in tasks:
        await executor.execute(task, sink)
    return (time.perf_counter() - started) / attempts * 1e6


async def main(rounds: int, attempts: int) -> None:
    log.setLevel(logging.INFO)
    log.propagate = False  # made and captured, printed nowhere
    off = _executor(None)
    on = _executor(LogLimits(max_lines=10**6, max_bytes=10**9, masker=Masker()))
    await _time(off, "silent", 1000)  # warm-up
    await _time(on, "silent", 1000)
    results: dict[str, list[float]] = {"off": [], "on": [], "line": []}
    for i in range(rounds):
        order = ("off", "on") if i % 2 == 0 else ("on", "off")  # neither always goes first
        for name in order:
            gc.collect()
            executor = off if name == "off" else on
            results[name].append(await _time(executor, "silent", attempts))
        gc.collect()
        results["line"].append(await _time(on, "one_line", attempts))
    off_us, on_us = statistics.median(results["off"]), statistics.median(results["on"])
    line_us = statistics.median(results["line"])
    print(f"python {sys.version.split()[0]}, {rounds} rounds of {attempts} attempts")
    for name, values in results.items():
        print(f"  {name:>4}: " + " ".join(f"{v:.1f}" for v in values))
    print(f"silent handler, capture off: {off_us:.2f} us per attempt")
    print(f"silent handler, capture on:  {on_us:.2f} us per attempt ({on_us - off_us:+.2f})")
    print(f"one INFO line, capture on:   {line_us:.2f} us per attempt ({line_us - on_us:+.2f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--attempts", type=int, default=20_000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.attempts))
