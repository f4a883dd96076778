"""What the commands print: the two consoles, error messages, warnings, and the exit they end
with."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import Any, NoReturn

import typer
from rich.console import Console, ConsoleOptions, RenderableType
from rich.markup import escape
from rich.segment import Segment

__all__ = [
    "SafeConsole",
    "console",
    "err",
    "fail",
    "log_level",
    "print_definition_error",
    "print_warnings",
    "shown",
]

# What the terminal would act on rather than show: C0 controls but tab and newline, DEL, C1
# controls (ESC and CSI open sequences that clear the screen, set the title, write the
# clipboard or hide text) and the bidirectional overrides that reorder what is read.
_UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with every character a terminal would act on written as an escape
    (``\\x1b``, ``\\u202e``): log lines, errors and names come from workflows and callers."""
    return _UNSAFE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


class SafeConsole(Console):
    """A console that shows, never obeys, control characters in what it prints.

    Everything the commands print (a node's log line, an error a server sent, a workflow's
    name) may be written by someone else; rich keeps ESC sequences of text as they are, so
    they are escaped here, below every renderable, where rich's own styling is not text."""

    def render(
        self, renderable: RenderableType, options: ConsoleOptions | None = None
    ) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control is None and _UNSAFE.search(segment.text):
                yield Segment(printable(segment.text), segment.style)
            else:
                yield segment


console = SafeConsole()
# Messages are never cut into lines at the terminal's width: a path or a sentence split by
# a newline no longer matches what scripts and users search for.
err = SafeConsole(stderr=True, soft_wrap=True)


def fail(code: int, message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def shown(value: object) -> str:
    """``value`` as printable text: a path or argument that was not UTF-8 still prints."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def print_definition_error(exc: Any) -> None:
    """A ``DefinitionError`` (or the client's ``InvalidDefinition``): its source, every issue.
    What a request said (inputs, overrides, ``--from-node``) is an "invalid request"."""
    source = f"{escape(str(exc.source))}: " if exc.source else ""
    count = len(exc.issues)
    heading = getattr(exc, "heading", "invalid workflow definition")
    err.print(
        f"[bold red]{heading}[/] {source}({count} problem{'s' if count != 1 else ''})",
        highlight=False,
    )
    for issue in exc.issues:
        err.print(f"  [red]-[/] {escape(str(issue))}", highlight=False)


def print_warnings(warnings: Any) -> None:
    """A definition's warnings on stderr, unless ORCHESTRION_LOG_LEVEL asks for less."""
    warnings = list(warnings)
    if not warnings:
        return  # the level is read from the settings: not for nothing to print
    if logging.getLevelName(log_level().upper()) > logging.WARNING:
        return
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(str(warning))}", highlight=False)


def log_level() -> str:
    """ORCHESTRION_LOG_LEVEL when it is set (environment or ``.env``), else WARNING: the
    commands people type are quiet unless asked; the service's default (INFO) is its own."""
    from orchestrion.errors import ConfigurationError
    from orchestrion.settings import load_settings

    try:
        settings = load_settings()
    except (ConfigurationError, ValueError):
        return "WARNING"  # the command that loads the settings names the problem
    return settings.log_level if "log_level" in settings.model_fields_set else "WARNING"
