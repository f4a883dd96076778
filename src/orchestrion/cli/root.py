"""The root ``orchestrion`` typer app, whose commands ``cli/commands.py`` loads as they are
used, with its ``--version`` option and ``version`` command."""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrion.cli.commands import LazyGroup
from orchestrion.cli.exits import EXIT_OK
from orchestrion.cli.terminal import console

__all__ = ["app", "version"]

app = typer.Typer(
    name="orchestrion",
    cls=LazyGroup,
    help="Durable workflow orchestration: run DAGs from YAML or JSON.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _print_version(value: bool) -> None:
    if value:
        from orchestrion import __version__

        typer.echo(f"orchestrion {__version__}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the Orchestrion version and exit.",
        ),
    ] = False,
) -> None:
    """Durable workflow orchestration: run DAGs from YAML or JSON."""


def version() -> None:
    """Print the Orchestrion version."""
    from orchestrion import __version__

    console.print(f"orchestrion {__version__}")
