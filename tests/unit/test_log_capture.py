"""Node log capture: each attempt's own lines, from its tasks and threads, bounded and masked,
reported as NodeLogged events before the outcome, while it runs, and inline."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from orchestrion.core.events import Event, NodeLogged, NodeStarted, NodeSucceeded
from orchestrion.dispatch.base import TaskMessage
from orchestrion.execution import log_capture
from orchestrion.execution.executor import NodeExecutor
from orchestrion.execution.log_capture import CAPPED_LOGGER, LogLimits
from orchestrion.governance.masking import Masker
from orchestrion.governance.secret_logs import hide_in_logs
from orchestrion.handlers.base import Controls, HandlerSpec, NodeContext, Resources, run_of
from orchestrion.handlers.builtin import builtin_specs
from orchestrion.handlers.registry import HandlerRegistry

log = logging.getLogger("tests.capture")


@pytest.fixture(autouse=True)
def _info_enabled() -> Any:
    # Records below the logger's level are never made, so never captured: as in the CLI and
    # the server, which let INFO records be made (logging_setup.capture_node_info).
    previous = log.level
    log.setLevel(logging.DEBUG)
    yield
    log.setLevel(previous)


async def _talk(ctx: NodeContext, config: Any) -> Any:
    for i in range(3):
        log.info("%s says %d", ctx.node_id, i)
        await asyncio.sleep(0)  # other attempts log in between
    return ctx.node_id


def _threaded_lines(node_id: str) -> str:
    for i in range(3):
        log.info("%s in a thread %d", node_id, i)
        time.sleep(0.001)
    return node_id


async def _threaded(ctx: NodeContext, config: Any) -> Any:
    return await asyncio.to_thread(_threaded_lines, ctx.node_id)


async def _chatty(ctx: NodeContext, config: Any) -> Any:
    for i in range(int(config.get("lines", 10))):
        log.info("%s", config.get("text", "x") + str(i))
    return None


async def _failing(ctx: NodeContext, config: Any) -> Any:
    try:
        raise ValueError("bad value for bob@example.com")
    except ValueError:
        log.exception("it broke")
    return 1


async def _slow(ctx: NodeContext, config: Any) -> Any:
    log.info("first")
    await asyncio.sleep(log_capture.FLUSH_SECONDS * 2.5)
    log.info("second")
    return 1


def _inline(ctx: NodeContext, config: Any) -> Any:
    log.warning("inline line of %s", ctx.node_id)
    return 1


def _silent(ctx: NodeContext, config: Any) -> Any:
    return 1


SPECS = [
    HandlerSpec("t_talk", _talk),
    HandlerSpec("t_threaded", _threaded),
    HandlerSpec("t_chatty", _chatty),
    HandlerSpec("t_failing", _failing),
    HandlerSpec("t_slow", _slow),
    HandlerSpec("t_inline", run_of(_inline), run_now=_inline),
    HandlerSpec("t_silent", run_of(_silent), run_now=_silent),
]


def executor(limits: LogLimits | None = None) -> NodeExecutor:
    registry = HandlerRegistry([*builtin_specs(), *SPECS])
    return NodeExecutor(registry, Resources(Controls.unrestricted()), logs=limits or LogLimits())


def task(handler: str, node: str = "n", config: dict[str, Any] | None = None) -> TaskMessage:
    return TaskMessage("e1", node, 1, handler, config or {}, {}, {}, idempotency_key="k")


class Sink:
    def __init__(self) -> None:
        self.events: list[tuple[str, Event]] = []

    def __call__(self, execution_id: str, event: Event) -> None:
        self.events.append((execution_id, event))

    def lines(self, node: str | None = None) -> list[dict[str, Any]]:
        return [
            line
            for _, event in self.events
            if isinstance(event, NodeLogged) and (node is None or event.node == node)
            for line in event.lines
        ]

    def messages(self, node: str | None = None) -> list[str]:
        return [line["message"] for line in self.lines(node)]


async def test_concurrent_attempts_keep_their_own_lines() -> None:
    ex, sink = executor(), Sink()
    await asyncio.gather(*(ex.execute(task("t_talk", f"n{i}"), sink) for i in range(5)))
    for i in range(5):
        assert sink.messages(f"n{i}") == [f"n{i} says {j}" for j in range(3)]
    line = sink.lines("n0")[0]
    assert line["level"] == "INFO" and line["logger"] == "tests.capture"
    assert isinstance(line["at"], float)


async def test_threads_of_def_functions_are_attributed_to_their_attempt() -> None:
    ex, sink = executor(), Sink()
    await asyncio.gather(*(ex.execute(task("t_threaded", f"t{i}"), sink) for i in range(4)))
    for i in range(4):
        assert sink.messages(f"t{i}") == [f"t{i} in a thread {j}" for j in range(3)]


async def test_lines_come_before_the_outcome() -> None:
    ex, sink = executor(), Sink()
    await ex.execute(task("t_talk"), sink)
    kinds = [type(event) for _, event in sink.events]
    assert kinds == [NodeStarted, NodeLogged, NodeSucceeded]


async def test_an_attempt_that_logs_nothing_reports_no_lines() -> None:
    ex, sink = executor(), Sink()
    await ex.execute(task("t_silent"), sink)
    assert [type(event) for _, event in sink.events] == [NodeStarted, NodeSucceeded]
    assert ex.run_now(task("t_silent"), sink)
    assert not any(isinstance(event, NodeLogged) for _, event in sink.events)


async def test_lines_outside_attempts_are_not_captured() -> None:
    ex, sink = executor(), Sink()
    log.info("not in any attempt")
    await ex.execute(task("t_talk"), sink)
    assert "not in any attempt" not in sink.messages()
    assert not log_capture.INLINE_PENDING


def test_inline_attempts_report_their_lines() -> None:
    ex, sink = executor(), Sink()
    assert ex.run_now(task("t_inline", "i1"), sink)
    assert ex.run_now(task("t_inline", "i2"), sink)
    assert [type(event) for _, event in sink.events] == [NodeStarted, NodeLogged, NodeSucceeded] * 2
    assert sink.messages("i1") == ["inline line of i1"]
    assert sink.messages("i2") == ["inline line of i2"]
    assert not log_capture.INLINE_PENDING


async def test_lines_over_the_line_cap_are_counted_and_said() -> None:
    ex, sink = executor(LogLimits(max_lines=5)), Sink()
    await ex.execute(task("t_chatty", config={"lines": 12}), sink)
    lines = sink.lines()
    assert [line["message"] for line in lines[:5]] == [f"x{i}" for i in range(5)]
    assert len(lines) == 6
    assert lines[-1]["logger"] == CAPPED_LOGGER and lines[-1]["level"] == "WARNING"
    assert lines[-1]["message"].startswith("7 more log line(s) (16 bytes) left out")
    assert "ORCHESTRION_NODE_LOG_MAX_LINES" in lines[-1]["message"]


async def test_lines_over_the_byte_cap_are_counted_and_long_lines_cut() -> None:
    ex, sink = executor(LogLimits(max_bytes=200, max_line=40)), Sink()
    await ex.execute(task("t_chatty", config={"lines": 5, "text": "é" * 60}), sink)
    lines = sink.lines()
    kept = [line for line in lines if line["logger"] != CAPPED_LOGGER]
    assert len(kept) == 1  # the cut line: 40 characters + the note of what was cut
    assert kept[0]["message"].startswith("é" * 40 + "… [21 characters cut]")
    assert lines[-1]["logger"] == CAPPED_LOGGER
    assert lines[-1]["message"].startswith("4 more log line(s)")


async def test_lines_are_masked_and_secrets_hidden() -> None:
    hide_in_logs(["s3cr3t-value-123"])
    ex, sink = executor(LogLimits(masker=Masker())), Sink()
    await ex.execute(
        task("t_chatty", config={"lines": 1, "text": "mail bob@example.com key s3cr3t-value-123 "}),
        sink,
    )
    (message,) = sink.messages()
    assert "bob@example.com" not in message and "[email]" in message
    assert "s3cr3t-value-123" not in message


async def test_an_exception_logged_brings_its_traceback_masked() -> None:
    ex, sink = executor(LogLimits(masker=Masker())), Sink()
    await ex.execute(task("t_failing"), sink)
    (message,) = sink.messages()
    assert message.startswith("it broke\nTraceback")
    assert "ValueError: bad value for [email]" in message


def test_an_exception_logged_where_the_process_masks_its_logs_keeps_its_traceback() -> None:
    # A process whose policy masks its logs installs that masking before node logs are
    # captured (as `orchestrion serve` does): the traceback reaches the capture already
    # rendered and masked, the exception gone from the record. A fresh process, since both
    # are process-wide and installed once.
    here = Path(__file__).parent
    script = (
        "import asyncio, sys\n"
        "from orchestrion.governance.log_masking import mask_process_logs\n"
        "from orchestrion.governance.masking import Masker\n"
        "mask_process_logs(Masker())\n"
        f"sys.path.insert(0, {str(here)!r})\n"
        "import test_log_capture as t\n"
        "asyncio.run(t.test_an_exception_logged_brings_its_traceback_masked())\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-2000:]


async def test_a_running_attempt_sends_its_lines_as_it_goes() -> None:
    ex, sink = executor(), Sink()
    job = asyncio.create_task(ex.execute(task("t_slow"), sink))
    await asyncio.sleep(log_capture.FLUSH_SECONDS * 1.5)
    assert sink.messages() == ["first"]  # flushed while the attempt still runs
    assert not any(isinstance(event, NodeSucceeded) for _, event in sink.events)
    await job
    assert sink.messages() == ["first", "second"]
    assert isinstance(sink.events[-1][1], NodeSucceeded)


async def test_off_turns_capture_off() -> None:
    ex, sink = executor(LogLimits(max_lines=0)), Sink()
    await ex.execute(task("t_talk"), sink)
    assert not sink.lines()


async def test_a_thread_that_outlives_its_attempt_adds_nothing() -> None:
    ex, sink = executor(), Sink()
    release = threading.Event()
    done = threading.Event()

    def late() -> None:
        release.wait(5)
        log.info("too late")
        done.set()

    async def leaves_a_thread(ctx: NodeContext, config: Any) -> Any:
        log.info("on time")
        threading.Thread(target=_in_context(late)).start()
        return 1

    ex.registry.register(HandlerSpec("t_leaves", leaves_a_thread), replace=True)
    await ex.execute(task("t_leaves"), sink)
    release.set()
    assert done.wait(5)
    await asyncio.sleep(log_capture.FLUSH_SECONDS * 1.5)
    assert sink.messages() == ["on time"]


def _in_context(fn: Any) -> Any:
    import contextvars

    context = contextvars.copy_context()
    return lambda: context.run(fn)


async def test_a_line_cannot_pass_for_a_sealed_one() -> None:
    ex, sink = executor(), Sink()
    await ex.execute(task("t_chatty", config={"lines": 1, "text": "\x1esealed:{}"}), sink)
    assert sink.messages() == ["\ufffdsealed:{}0"]


async def test_a_cancelled_attempt_still_reports_its_lines() -> None:
    ex, sink = executor(), Sink()
    job = asyncio.create_task(ex.execute(task("t_slow"), sink))
    await asyncio.sleep(0.05)
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert sink.messages() == ["first"]
    assert not any(isinstance(event, NodeSucceeded) for _, event in sink.events)


async def test_an_executor_without_capture_keeps_nothing_when_another_has_it() -> None:
    executor()  # capture on in the process
    quiet, sink = executor(LogLimits(max_lines=0)), Sink()
    await quiet.execute(task("t_talk"), sink)
    assert quiet.run_now(task("t_inline"), sink)
    assert not sink.lines()
    assert not log_capture.INLINE_PENDING
