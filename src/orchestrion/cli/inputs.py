"""The command line's own input: its arguments as text, and a run's ``-i key=value`` and
``--inputs-file`` parameters."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.markup import escape

from orchestrion.cli.exits import EXIT_INVALID
from orchestrion.cli.terminal import err, fail, shown

__all__ = ["check_arguments", "parse_inputs"]


def check_arguments(arguments: list[str]) -> None:
    """Exit 2 for an argument that is not UTF-8 (Python hands it over with lone surrogates,
    which no store, URL or JSON document can take), unless it names an existing file."""
    for argument in arguments:
        try:
            argument.encode("utf-8")
        except UnicodeEncodeError:
            if not Path(argument).exists():
                text = shown(argument)
                text = text if len(text) <= 80 else text[:77] + "..."
                err.print(
                    f"[bold red]error:[/] argument '{escape(text)}' is not UTF-8 text",
                    highlight=False,
                )
                sys.exit(EXIT_INVALID)  # typer is not running yet: no typer.Exit here


def parse_inputs(pairs: list[str], inputs_file: Path | None) -> dict[str, Any]:
    """``--inputs-file`` then each ``-i key=value`` (a JSON value, else the text itself).

    Values go through the same checks as an API body (``safe_data``): an argument that is
    not UTF-8, nesting beyond 64 levels, an integer of 5,000 digits or ``NaN`` is exit 2
    naming the input, never a traceback.
    """
    from orchestrion import safe_data

    inputs: dict[str, Any] = {}
    if inputs_file is not None:
        try:
            loaded = safe_data.loads(inputs_file.read_bytes())
        except (OSError, ValueError) as exc:  # UnsafeData and JSONDecodeError included
            fail(EXIT_INVALID, f"cannot read inputs file {shown(inputs_file)}: {exc}")
        if not isinstance(loaded, dict):
            fail(EXIT_INVALID, f"inputs file {shown(inputs_file)} must hold a JSON object")
        inputs.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            fail(EXIT_INVALID, f"bad input {shown(pair)!r}: use -i key=value")
        try:
            safe_data.check_text(pair)  # an argument that was not UTF-8 holds surrogates
            inputs[key] = safe_data.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw
        except safe_data.UnsafeData as exc:
            where = f" {exc.where}" if exc.pointer or exc.line else ""
            fail(EXIT_INVALID, f"input '{shown(key)}': {exc.reason}{where}")
    return inputs
