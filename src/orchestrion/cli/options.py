"""The options and arguments many commands share, typed once for typer."""

from __future__ import annotations

from typing import Annotated

import typer

__all__ = ["ApiKeyOption", "DbOption", "ExecutionIdArgument", "JsonOption", "ServerOption"]

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
