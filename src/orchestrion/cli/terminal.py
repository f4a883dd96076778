"""What the commands print: the two consoles, error messages, warnings, and the exit they end
with."""

from __future__ import annotations

import logging
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

__all__ = [
    "console",
    "err",
    "fail",
    "log_level",
    "print_definition_error",
    "print_warnings",
    "shown",
]

console = Console()
# Messages are never cut into lines at the terminal's width: a path or a sentence split by
# a newline no longer matches what scripts and users search for.
err = Console(stderr=True, soft_wrap=True)


def fail(code: int, message: str) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def shown(value: object) -> str:
    """``value`` as printable text: a path or argument that was not UTF-8 still prints."""
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def print_definition_error(exc: Any) -> None:
    """A ``DefinitionError`` (or the client's ``InvalidDefinition``): its source, every issue."""
    source = f"{escape(str(exc.source))}: " if exc.source else ""
    count = len(exc.issues)
    err.print(
        f"[bold red]invalid workflow definition[/] {source}"
        f"({count} problem{'s' if count != 1 else ''})",
        highlight=False,
    )
    for issue in exc.issues:
        err.print(f"  [red]-[/] {escape(str(issue))}", highlight=False)


def print_warnings(warnings: Any) -> None:
    """A definition's warnings on stderr, unless ORCHESTRION_LOG_LEVEL asks for less."""
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
