"""``orchestrion validate`` and ``orchestrion graph``: a definition file checked, or drawn,
without running it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.cli.local import definition_limits, import_from_working_directory
from orchestrion.cli.options import JsonOption
from orchestrion.cli.terminal import console, fail, print_definition_error, print_warnings, shown

__all__ = ["graph", "validate"]

DefinitionFile = Annotated[Path, typer.Argument(help="Workflow definition (YAML or JSON).")]


def validate(file: DefinitionFile, as_json: JsonOption = False) -> None:
    """Check a definition without running it; every problem is listed."""
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    import_from_working_directory()
    try:
        loaded = load_definition(file, limits=definition_limits())
    except DefinitionError as exc:
        if as_json:
            console.print_json(
                json.dumps({"valid": False, "issues": [i.to_dict() for i in exc.issues]})
            )
        else:
            print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    spec = loaded.spec
    if as_json:
        console.print_json(
            json.dumps(
                {
                    "valid": True,
                    "name": spec.name,
                    "version": spec.version,
                    "dialect": loaded.dialect,
                    "nodes": len(spec.dag.nodes),
                    "warnings": loaded.warnings,
                }
            )
        )
        return
    print_warnings(loaded.warnings)
    edges = sum(len(node.dependencies) for node in spec.dag.nodes)
    console.print(
        f"[green]✓[/] {escape(shown(file))}: workflow '{escape(spec.name)}' is valid "
        f"({len(spec.dag.nodes)} nodes, {edges} edges, {loaded.dialect} format)",
        highlight=False,
    )


def graph(
    file: DefinitionFile,
    fmt: Annotated[str, typer.Option("--format", "-f", help="mermaid or dot")] = "mermaid",
) -> None:
    """Print the workflow's graph as Mermaid (default) or Graphviz DOT."""
    from orchestrion.definition.graph import to_dot, to_mermaid
    from orchestrion.errors import DefinitionError
    from orchestrion.handlers.loading import load_definition

    if fmt not in ("mermaid", "dot"):
        fail(EXIT_INVALID, f"unknown format {fmt!r}: use mermaid or dot")
    try:
        loaded = load_definition(file, limits=definition_limits())
    except DefinitionError as exc:
        print_definition_error(exc)
        raise typer.Exit(EXIT_INVALID) from None
    text = to_mermaid(loaded.spec) if fmt == "mermaid" else to_dot(loaded.spec)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
