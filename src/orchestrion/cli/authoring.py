"""Commands for writing workflows: ``orchestrion examples`` and ``orchestrion schema``.

``examples DIR`` writes the shipped example workflows (the demo, the reference examples, the
workflow patterns) into DIR; ``schema`` prints the JSON Schema of the workflow format, for
editors to complete and check workflow files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrion.cli.exits import EXIT_INVALID, EXIT_OK
from orchestrion.cli.terminal import console, err, fail

__all__ = ["examples", "schema"]


def examples(
    directory: Annotated[
        Path, typer.Argument(help="Where to write them (created if missing).")
    ] = Path("orchestrion-examples"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing files.")] = False,
) -> None:
    """Write the example workflows (demo, reference examples, patterns) into DIRECTORY."""
    from orchestrion.examples import example_files

    found = list(example_files())
    if not force:
        clashes = [str(directory / rel) for rel, _ in found if (directory / rel).exists()]
        if clashes:
            fail(
                EXIT_INVALID,
                f"{len(clashes)} file(s) already exist, e.g. {clashes[0]}: nothing was "
                "written (use --force to overwrite)",
            )
    try:
        for rel, resource in found:
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(resource.read_bytes())
    except OSError as exc:
        fail(EXIT_INVALID, f"cannot write the examples into {directory}: {exc.strerror}")
    err.print(
        f"wrote {len(found)} example workflows into {directory}", highlight=False, markup=False
    )
    console.print(f"next: orchestrion run {directory / 'demo.yaml'}", highlight=False, markup=False)
    raise typer.Exit(EXIT_OK)


def schema() -> None:
    """Print the JSON Schema of the workflow format (for editors: save it and point to it)."""
    from orchestrion.definition.json_schema import shipped_schema_text

    # Plain print: Rich would wrap lines and read brackets as markup.
    typer.echo(shipped_schema_text(), nl=False)
