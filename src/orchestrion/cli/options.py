"""The options and arguments many commands share, typed once for typer, and the reading of
the values several take (instants)."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.cli.terminal import fail

__all__ = [
    "ApiKeyOption",
    "DbOption",
    "ExecutionIdArgument",
    "JsonOption",
    "ServerOption",
    "instant",
]

DbOption = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLite file or database URL (default: $ORCHESTRION_DATABASE_URL or ./orchestrion.db)",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
ServerOption = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="ORCHESTRION_SERVER_URL",
        help="Use a running Orchestrion server at this URL instead of the local database.",
    ),
]
ApiKeyOption = Annotated[
    str | None, typer.Option("--api-key", envvar="ORCHESTRION_API_KEY", help="Server API key.")
]
ExecutionIdArgument = Annotated[
    str,
    typer.Argument(
        help="Execution id, or its first or last characters if no other id starts or ends"
        " with them."
    ),
]


def instant(value: str | None, name: str) -> float | None:
    """Option ``name``'s ``value`` (epoch seconds or ISO 8601) as epoch seconds, None when not
    given; a value that is neither ends the command (exit 2) saying so."""
    from orchestrion.instants import parse_instant

    if value is None:
        return None
    try:
        return parse_instant(value)
    except ValueError as exc:
        fail(EXIT_INVALID, f"{name}: {exc}, got {value!r}")
