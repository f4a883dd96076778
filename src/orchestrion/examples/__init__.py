"""The example workflows shipped with Orchestrion (``orchestrion examples DIR`` writes them out).

``demo.yaml`` is the demo; ``reference/`` holds the reference examples, each of which loads
and runs as written; ``patterns/`` the workflow patterns, one file each; ``events/`` workflows
started by events (``orchestrion emit``).
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import PurePosixPath

__all__ = ["example_files"]

_SUFFIXES = (".yaml", ".yml", ".json")


def example_files() -> Iterator[tuple[PurePosixPath, Traversable]]:
    """Every shipped example as (path relative to the examples folder, its resource)."""

    def walk(
        folder: Traversable, prefix: PurePosixPath
    ) -> Iterator[tuple[PurePosixPath, Traversable]]:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                if not entry.name.startswith("__"):
                    yield from walk(entry, prefix / entry.name)
            elif entry.name.endswith(_SUFFIXES):
                yield prefix / entry.name, entry

    yield from walk(files(__name__), PurePosixPath())
