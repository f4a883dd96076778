"""Structured logs for the server: ``configure_logging`` is called by ``orchestrion serve``.

The library never configures logging; the server does, here: one handler on the root logger
writing JSON lines (or readable console lines), every line carrying the fields passed as
``extra`` and the request id of the request being served. Given the policy's masker, every
line is masked: message, exception and fields (``governance/log_masking.py``).
``log_transitions`` is a record-feed sink that logs each execution and node transition at INFO
with the execution id and its correlation id (the request id of the trigger), so one id finds
every line of a run. The error text of an execution sealed at rest is not logged: its line
says ``[sealed: <category>]`` (the store keeps the text, encrypted).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TextIO

from orchestrion.governance.log_masking import (
    STANDARD_ATTRIBUTES,
    MaskingFilter,
    mask_process_logs,
    mask_uncaught_exceptions,
)
from orchestrion.logcontext import current_node_fields, current_request_id, reaches_a_handler

if TYPE_CHECKING:  # the command line imports this module at start: not the engine's
    from orchestrion.core.events import Record
    from orchestrion.governance.masking import Masker
    from orchestrion.observability.feed import ExecutionInfo

__all__ = [
    "ConsoleFormatter",
    "JsonFormatter",
    "capture_node_info",
    "configure_logging",
    "log_transitions",
]

transitions_logger = logging.getLogger("orchestrion.api.transitions")


# Uvicorn passes its message again with ANSI colour codes, for its own formatter only.
_DROPPED = frozenset({"color_message"})


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = {
        k: v for k, v in vars(record).items() if k not in STANDARD_ATTRIBUTES and k not in _DROPPED
    }
    for key, value in current_node_fields().items():  # a line written inside a handler
        fields.setdefault(key, value)
    if "request_id" not in fields:
        request_id = current_request_id()
        if request_id is not None:
            fields["request_id"] = request_id
    return fields


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, then the structured fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:  # masked when the record was made, if masking is on
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for people at a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        fields = _fields(record)
        if not fields:
            return text
        head, sep, rest = text.partition("\n")  # keep a traceback below the fields
        extra = " ".join(f"{key}={value}" for key, value in fields.items())
        return f"{head} {extra}{sep}{rest}"


def configure_logging(
    fmt: Literal["json", "console"] = "json",
    level: str = "INFO",
    stream: TextIO | None = None,
    masker: Masker | None = None,
) -> None:
    """Send every log line (uvicorn's too) to ``stream`` (stderr) in ``fmt``, masked with
    ``masker`` (the policy's) when one is given, secrets hidden: this is the process's own
    logging, so the process-wide hooks go in (``mask_process_logs``).

    Uvicorn's own access log is silenced: the API writes a structured one with the request id.
    """
    mask_process_logs(masker)
    mask_uncaught_exceptions()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else ConsoleFormatter())
    handler.addFilter(MaskingFilter())  # the fields; the factory masks the rest
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    capture_node_info(level)
    for name in ("uvicorn", "uvicorn.error"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.propagate = False
    access.disabled = True


def capture_node_info(level: str | int) -> None:
    """Let INFO lines be made even when the process prints only ``level`` and above: its
    handlers keep ``level``, the root logger goes down to INFO, so that a node attempt's INFO
    lines are captured into its log (``execution/log_capture.py``) without being printed."""
    root = logging.getLogger()
    wanted = logging.getLevelName(level) if isinstance(level, str) else level
    if not isinstance(wanted, int) or wanted <= logging.INFO:
        return
    for handler in root.handlers:
        if handler.level < wanted:
            handler.setLevel(wanted)
    root.setLevel(logging.INFO)


def log_transitions(info: ExecutionInfo, records: list[Record]) -> None:
    """Record-feed sink: one INFO line per execution or node transition."""
    if not reaches_a_handler(transitions_logger, logging.INFO):
        return
    for record in records:
        fields: dict[str, Any] = {
            "execution_id": info.execution_id,
            "correlation_id": info.correlation_id,
            "workflow": info.workflow,
            "event": record.type,
        }
        if record.node is None:
            status = record.status.value if record.status is not None else None
            fields["status"] = status
            transitions_logger.info("execution %s %s", info.execution_id, record.type, extra=fields)
            continue
        state = record.state.value if record.state is not None else None
        fields.update(
            node_id=record.node,
            handler=info.handler(record.node),
            state=state,
            attempt=record.attempt,
        )
        error = record.error
        if error is not None:
            # The text of an error of a classified execution is sealed at rest: not logged.
            fields["error"] = (
                f"[sealed: {error.get('category')}]" if info.sealed else error.get("message")
            )
        # A compensation's records leave the node completed (its action is what was undone,
        # or not): the line says what happened to the compensation, never "completed".
        kind = str(record.type)
        said = kind.removeprefix("node.") if "compensat" in kind else state
        transitions_logger.info(
            "node %s %s (attempt %d)", record.node, said, record.attempt, extra=fields
        )
