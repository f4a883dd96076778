"""Secret values, and their common transforms, scrubbed from every log line of the process.

The backstop for logs, as ``secret_scrub`` is for outputs and errors: a library's debug
logging can print what a downstream sent back (httpcore logs response headers at DEBUG, and a
server may echo the request's credentials in one). ``hide_in_logs(values)`` adds values to
hide; ``scrub_logs()`` installs, once per process, a log record factory that replaces them in
each record's message and exception text when the record is made, whichever logger made it
and whichever handlers print it. The node executor calls the first with the secrets it
renders; the second is for a process that is Orchestrion's or asks for it (the
``mask_all_logs`` setting), since a library may not change how its embedder's process logs.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from orchestrion.governance.secret_scrub import Scrubber

__all__ = ["hidden_in_logs", "hide_in_logs", "scrub_log_text", "scrub_logs"]

_values: frozenset[str] = frozenset()
_scrubber: Scrubber | None = None
_lock = threading.Lock()
_installed = False
_exceptions = logging.Formatter()

_Factory = Callable[..., logging.LogRecord]


def hide_in_logs(values: Iterable[str]) -> None:
    """Scrub ``values`` (as well as those given before) from every log record from now on,
    once ``scrub_logs`` has been called (before or after)."""
    global _values, _scrubber
    with _lock:
        merged = _values | {v for v in values if v}
        if merged == _values:
            return
        _values = merged
        _scrubber = Scrubber(merged)


def scrub_logs() -> None:
    """Hide the values given to ``hide_in_logs``, before and after, in every log record of
    this process from now on: installs a process-wide log record factory, once."""
    global _installed
    with _lock:
        if not _installed:
            logging.setLogRecordFactory(_scrubbing_factory(logging.getLogRecordFactory()))
            _installed = True


def hidden_in_logs() -> frozenset[str]:
    """The values scrubbed from log records in this process."""
    return _values


def scrub_log_text(text: str) -> str:
    """``text`` with the values given to ``hide_in_logs`` replaced (for log lines kept
    elsewhere than the process's log: a node attempt's captured lines)."""
    scrubber = _scrubber
    return scrubber.text(text) if scrubber else text


def _scrubbing_factory(previous: _Factory) -> _Factory:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        scrubber = _scrubber
        if scrubber:
            _scrub_record(record, scrubber)
        return record

    return factory


def _scrub_record(record: logging.LogRecord, scrubber: Scrubber) -> None:
    try:
        message = record.getMessage()
    except Exception:
        message = f"{record.msg} {record.args!r}"  # a broken format string: printed raw
    clean = scrubber.text(message)
    if clean != message:
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[1] is not None:
        text = _exceptions.formatException(record.exc_info)
        clean = scrubber.text(text)
        if clean != text:
            # Rendered where formatters look first; only the exception's type stays.
            record.exc_text = clean
            kind = record.exc_info[0]
            record.exc_info = (kind, None, None) if kind is not None else None  # type: ignore[assignment]
    if record.exc_text:
        # Another factory (the log masker) may have rendered the traceback already.
        record.exc_text = scrubber.text(record.exc_text)
    if record.stack_info:
        record.stack_info = scrubber.text(record.stack_info)
