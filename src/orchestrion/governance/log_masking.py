"""Personal data masked in every log line the process writes (issue #6).

``set_log_masker(masker)`` puts the policy's masker in force for the whole process, through
two hooks:

- a log record factory (``logging.setLogRecordFactory``): every record, from any logger
  (Orchestrion's, a handler's ``ctx.logger``, httpx, uvicorn...), has its message (the format
  string with its arguments), its exception text (the traceback included) and its stack
  masked when it is made, before any handler sees it: our handlers, pytest's caplog and a
  user's own handlers alike.
- ``MaskingFilter``, which Orchestrion's logging setup puts on its handlers: the fields passed
  as ``extra``, which the logging module attaches to a record after the factory has run.

A record with nothing to mask is left as it is (its ``args`` too, which some formatters
unpack). The masker skips, after one quick scan, text with no "@" and no pair of digits, so
most lines cost about a microsecond.

One process, one policy (``Governance``), one masker: the last one set wins.
``mask_process_logs`` (called by the server's logging setup, and by ``Engine.start`` with the
``mask_all_logs`` setting, on in the CLI) sets the policy's masker and hides secrets in logs;
nothing unsets it (masking more than asked is never a leak);
``None`` turns masking off, for tests. A masked record keeps only the type of its exception in
``exc_info``: the exception (whose message may hold personal data) and its traceback are
rendered, masked, into ``exc_text``, which the standard formatters print.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from collections.abc import Callable
from types import TracebackType
from typing import Any

from orchestrion.governance.masking import Masker

__all__ = [
    "STANDARD_ATTRIBUTES",
    "MaskingFilter",
    "current_log_masker",
    "mask_field",
    "mask_process_logs",
    "mask_record",
    "mask_uncaught_exceptions",
    "set_log_masker",
]

# Attributes every LogRecord has; anything else was passed as `extra`.
STANDARD_ATTRIBUTES = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_masker: Masker | None = None
_installed = False
_hooked = False
_SHORT = 10**7  # no built-in kind matches a number of fewer than 8 digits
_exceptions = logging.Formatter()


def current_log_masker() -> Masker | None:
    """The masker applied to log records in this process (None: masking is off)."""
    return _masker


def set_log_masker(masker: Masker | None) -> None:
    """Mask every log record made in this process from now on with ``masker``."""
    global _masker, _installed
    _masker = masker
    if masker is not None and not _installed:
        logging.setLogRecordFactory(_masking_factory(logging.getLogRecordFactory()))
        _installed = True


def mask_process_logs(masker: Masker | None) -> None:
    """Every log record this process makes from now on: masked with ``masker`` (when there
    is one: a policy without masking leaves a masker already set in force) and with the
    secrets the runtime renders hidden. Both are process-wide log record factories: for a
    process that is Orchestrion's, or whose owner asked for them."""
    from orchestrion.governance.secret_logs import scrub_logs

    if masker is not None:
        set_log_masker(masker)
    scrub_logs()


_Factory = Callable[..., logging.LogRecord]


def _masking_factory(previous: _Factory) -> _Factory:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        masker = _masker
        if masker is not None:
            mask_record(record, masker)
        return record

    return factory


def mask_record(record: logging.LogRecord, masker: Masker) -> None:
    """Mask a record's message, exception text and stack in place (not its extra fields)."""
    _mask_message(record, masker)
    if record.exc_info:
        # Cached where formatters look first, so the raw traceback is never rendered; the
        # exception itself (its message, its frames) leaves the record, only its type stays.
        record.exc_text = masker.mask_text(_exceptions.formatException(record.exc_info))
        kind = record.exc_info[0]
        # (type, None, None) is what traceback.format_exception renders as just the type name.
        record.exc_info = (kind, None, None) if kind is not None else None  # type: ignore[assignment]
    elif record.exc_text:
        record.exc_text = masker.mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = masker.mask_text(record.stack_info)


def _mask_message(record: logging.LogRecord, masker: Masker) -> None:
    try:
        message = record.getMessage()
    except Exception:
        # A broken format string: the handler will report it, printing msg and args.
        record.msg = masker.mask_text(str(record.msg))
        if isinstance(record.args, tuple):
            record.args = tuple(masker.mask_text(repr(arg)) for arg in record.args)
        elif record.args:
            record.args = (masker.mask_text(repr(record.args)),)
        return
    masked = masker.mask_text(message)
    if masked == message:
        return
    # Keep the arguments' shape when masking each of them is enough (uvicorn's access
    # formatter unpacks them); otherwise the whole message, already formatted, replaces them.
    if isinstance(record.msg, str) and isinstance(record.args, tuple) and record.args:
        msg = masker.mask_text(record.msg)
        args = tuple(_mask_argument(arg, masker) for arg in record.args)
        try:
            rendered = msg % args
        except Exception:
            rendered = None
        if rendered is not None and masker.mask_text(rendered) == rendered:
            record.msg, record.args = msg, args
            return
    record.msg, record.args = masked, ()


def _mask_argument(value: Any, masker: Masker) -> Any:
    if isinstance(value, str):
        return masker.mask_text(value)
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int) and -_SHORT < value < _SHORT and masker.builtin_only:
        return value  # counts, attempts, statuses: too short for any built-in kind
    text = str(value)
    masked = masker.mask_text(text)
    return value if masked == text else masked


def mask_field(value: Any, masker: Masker) -> Any:
    """An ``extra`` field's value with what looks like personal data masked."""
    if isinstance(value, dict):  # its keys too: a mapping keyed by e-mail address
        return masker.mask_entries([(key, mask_field(item, masker)) for key, item in value.items()])
    if isinstance(value, list | tuple):
        return [mask_field(item, masker) for item in value]
    return _mask_argument(value, masker)


class MaskingFilter(logging.Filter):
    """Masks the ``extra`` fields of each record a handler writes, with the process's masker."""

    def filter(self, record: logging.LogRecord) -> bool:
        masker = _masker
        if masker is None:
            return True
        fields = record.__dict__
        for key in fields.keys() - STANDARD_ATTRIBUTES:
            value = fields[key]
            masked = mask_field(value, masker)
            if masked is not value and masked != value:
                fields[key] = masked
        return True


def mask_uncaught_exceptions() -> None:
    """Python's report of an exception nobody caught (in any thread), which does not go
    through logging, is masked too: installed by the processes' logging setup."""
    global _hooked
    if _hooked:
        return
    _hooked = True
    previous = sys.excepthook
    previous_thread = threading.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        masker = _masker
        if masker is None:
            previous(kind, value, tb)
            return
        sys.stderr.write(masker.mask_text("".join(traceback.format_exception(kind, value, tb))))

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        masker = _masker
        if masker is None or args.exc_value is None:
            previous_thread(args)
            return
        name = args.thread.name if args.thread is not None else "?"
        text = "".join(
            traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback)
        )
        sys.stderr.write(f"Exception in thread {name}:\n{masker.mask_text(text)}")

    sys.excepthook = hook
    threading.excepthook = thread_hook
