"""The log lines a node attempt writes, captured per attempt, bounded, masked, sent on.

Whatever logs inside an attempt (a python function's ``logging`` calls, in its own thread
too, a built-in handler, the libraries they call) is kept with that attempt: a log record
factory, installed once per process (``install``), looks up the attempt of the context the
record is made in. The factory is process-wide state, so it goes in only where the process
is Orchestrion's or its embedder asks (the ``capture_node_logs`` setting, which the
``orchestrion`` commands turn on). The executor sets that context variable (``capturing``)
around each awaited attempt, and asyncio tasks and ``to_thread`` copy it, so many concurrent
attempts in one process each get their own lines. An attempt run inline (``run_now``) sets
nothing: its node's log fields (``logcontext.py``) are in force, and a line made under them
goes to a buffer of its own that the executor takes when the handler returns
(``take_inline``). An awaited attempt that logs nothing costs its log object and one context
variable set and reset; an inline one, one dict test.

Each attempt keeps at most ``LogLimits.max_lines`` lines and ``max_bytes`` bytes of message
(a line longer than ``max_line`` characters is cut); what is left out is counted, and the
attempt's last line, from the logger ``orchestrion.logs``, says how much. The lines are
masked (the policy's personal-data masker, and the secrets the process renders) when they
leave the attempt: every ``FLUSH_SECONDS`` while it runs, so a follower sees them live, and
when it ends, just before its outcome, as ``NodeLogged`` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import Event, NodeLogged
from orchestrion.execution.storable import log_text
from orchestrion.governance.masking import Masker
from orchestrion.governance.secret_logs import scrub_log_text
from orchestrion.logcontext import node_fields

if TYPE_CHECKING:
    from orchestrion.settings import Settings

__all__ = [
    "CAPPED_LOGGER",
    "FLUSH_SECONDS",
    "INLINE_PENDING",
    "AttemptLog",
    "LogLimits",
    "capturing",
    "install",
    "log_limits",
    "take_inline",
]

FLUSH_SECONDS = 0.5
"""How often a running attempt's new lines are sent on (seconds)."""

CAPPED_LOGGER = "orchestrion.logs"
"""The logger named by the line that says what a capped attempt left out."""

_Emit = Callable[[str, Event], None]


@dataclass(frozen=True, slots=True)
class LogLimits:
    """How much of one attempt's log is kept: lines, bytes of message, characters per line;
    ``max_lines`` 0 keeps nothing (capture off)."""

    max_lines: int = 1000
    max_bytes: int = 256 * 1024
    max_line: int = 8192
    masker: Masker | None = None

    @property
    def on(self) -> bool:
        return self.max_lines > 0 and self.max_bytes > 0


def log_limits(settings: Settings, masker: Masker | None) -> LogLimits:
    """The limits of ``settings`` (``ORCHESTRION_NODE_LOG_MAX_*``), masking with ``masker``;
    nothing kept unless ``capture_node_logs`` is on (the factory is process-wide state)."""
    if not settings.capture_node_logs:
        return LogLimits(max_lines=0, masker=masker)
    return LogLimits(settings.node_log_max_lines, settings.node_log_max_bytes, masker=masker)


class AttemptLog:
    """The lines of one attempt: appended from any thread, sent on from the event loop."""

    __slots__ = (
        "_loop",
        "_sent",
        "attempt",
        "closed",
        "dropped_bytes",
        "dropped_lines",
        "emit",
        "execution_id",
        "handle",
        "limits",
        "lines",
        "node_id",
        "size",
    )

    def __init__(
        self,
        execution_id: str,
        node_id: str,
        attempt: int,
        limits: LogLimits,
        emit: _Emit | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.execution_id = execution_id
        self.node_id = node_id
        self.attempt = attempt
        self.limits = limits
        self.emit = emit
        self._loop = loop
        self.lines: list[dict[str, Any]] = []
        self.size = 0
        self.dropped_lines = 0
        self.dropped_bytes = 0
        self.closed = False
        self._sent = 0
        self.handle: asyncio.TimerHandle | None = None

    def add(self, record: logging.LogRecord) -> None:
        """Keep ``record`` as a line, or count it as left out (any thread)."""
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: kept as written
            message = f"{record.msg} {record.args!r}"
        if record.exc_text:
            # Rendered by a factory before this one (the process's log masking, or secrets
            # hidden): what every formatter prints, and the exception itself has left it.
            message = f"{message}\n{record.exc_text}"
        elif record.exc_info and record.exc_info[0] is not None:
            message = f"{message}\n{_exceptions.formatException(record.exc_info)}"
        message = log_text(message)  # a lone surrogate or a NUL: kept as its escape (storable.py)
        limits = self.limits
        if len(message) > limits.max_line:
            cut = len(message) - limits.max_line
            message = f"{message[: limits.max_line]}… [{cut} characters cut]"
        size = len(message.encode("utf-8", "replace"))
        # No lock: list appends and slices are atomic, and only the counts of what is left
        # out could race, between threads of one attempt.
        if self.closed:
            return  # a thread that outlived its attempt: its outcome is reported
        if len(self.lines) >= limits.max_lines or self.size + size > limits.max_bytes:
            self.dropped_lines += 1
            self.dropped_bytes += size
            return
        self.size += size
        first = self._sent == len(self.lines)
        self.lines.append(
            {
                "at": record.created,
                "level": record.levelname,
                "logger": log_text(record.name),
                "message": message,
            }
        )
        if first and self._loop is not None and self.emit is not None:
            self._schedule()

    def _schedule(self) -> None:
        loop = self._loop
        assert loop is not None
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._arm()
        else:  # a thread of the attempt (a ``def`` function)
            # A closed loop: the lines go with the outcome, if there is one.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._arm)

    def _arm(self) -> None:
        if self.handle is None and not self.closed:
            assert self._loop is not None
            self.handle = self._loop.call_later(FLUSH_SECONDS, self._flush)

    def _flush(self) -> None:
        self.handle = None
        if self.closed or self.emit is None:
            return
        event = self._event(final=False)
        if event is not None:
            self.emit(self.execution_id, event)

    def close(self) -> NodeLogged | None:
        """The lines not sent yet (with the note of what was left out), and no more."""
        self.closed = True
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None
        return self._event(final=True)

    def _event(self, final: bool) -> NodeLogged | None:
        end = len(self.lines)
        chunk = self.lines[self._sent : end]
        self._sent = end
        if final and self.dropped_lines:
            chunk.append(self._capped_line())
        if not chunk:
            return None
        masker = self.limits.masker
        for line in chunk:
            text = scrub_log_text(line["message"])
            if text.startswith(_RECORD_SEPARATOR):  # how a sealed message begins at rest
                text = "\ufffd" + text[1:]
            line["message"] = masker.mask_text(text) if masker is not None else text
        return NodeLogged(self.node_id, self.attempt, time.time(), tuple(chunk))

    def _capped_line(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "at": time.time(),
            "level": "WARNING",
            "logger": CAPPED_LOGGER,
            "message": (
                f"{self.dropped_lines} more log line(s) ({self.dropped_bytes} bytes) left out:"
                f" an attempt keeps {limits.max_lines} lines and {limits.max_bytes} bytes"
                " (ORCHESTRION_NODE_LOG_MAX_LINES, ORCHESTRION_NODE_LOG_MAX_BYTES)"
            ),
        }


_exceptions = logging.Formatter()
_RECORD_SEPARATOR = "\x1e"
_current: ContextVar[AttemptLog | None] = ContextVar("orchestrion_attempt_log", default=None)
# Lines of attempts run inline (no AttemptLog set), by the identity of their node fields,
# which each attempt makes afresh (kept here with them, so the identity is not reused):
# taken by ``take_inline``.
_inline: dict[int, tuple[dict[str, Any], AttemptLog]] = {}
INLINE_PENDING = _inline
"""Whether inline attempts left lines to take (the executor tests it before ``take_inline``)."""
_inline_limits = LogLimits()
_installed = False
_install_lock = threading.Lock()

capturing = _current
"""The attempt whose lines the current context captures (set by the executor)."""


def install(limits: LogLimits) -> None:
    """Capture attempts' log lines in this process from now on (once; ``limits`` apply to
    inline attempts, the executor gives its own to the others)."""
    global _installed, _inline_limits
    _inline_limits = limits
    with _install_lock:
        if _installed:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            log = _current.get()
            if log is not None:
                log.add(record)
            elif node_fields.get() is not None:
                _capture_inline(record)
            return record

        logging.setLogRecordFactory(factory)
        _installed = True


def _capture_inline(record: logging.LogRecord) -> None:
    fields = node_fields.get()
    if fields is None or not _inline_limits.on:
        return
    held = _inline.get(id(fields))
    if held is None:
        log = AttemptLog(
            str(fields.get("execution_id")),
            str(fields.get("node_id")),
            int(fields.get("attempt") or 0),
            _inline_limits,
        )
        _inline[id(fields)] = (fields, log)
    else:
        log = held[1]
    log.add(record)


def take_inline() -> NodeLogged | None:
    """The lines of the inline attempt of this context, if it wrote any (the executor asks
    while the attempt's log fields are still in force)."""
    if not _inline:
        return None
    fields = node_fields.get()
    held = _inline.pop(id(fields), None) if fields is not None else None
    return held[1].close() if held is not None else None
