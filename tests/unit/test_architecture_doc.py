"""docs/ARCHITECTURE.md names real modules and draws the layers that test_layers.py enforces.

A source path in the doc is an inline code span such as `engine/loop.py`, `store/` or
`src/orchestrion/core/machine.py`, or a ``name/module.py`` word inside a code block (the
picture). Each must exist under src/orchestrion, so a module that moves takes the doc with it.
"""

from __future__ import annotations

import re
from pathlib import Path

from test_layers import LAYERS

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGE = ROOT / "src" / "orchestrion"

# Paths of the repository itself, not of the package: named in the doc, not checked here.
NOT_SOURCE = ("tests/", "docs/ARCHITECTURE.md", "scripts/", "bench/")

_FENCE = re.compile(r"^```.*?^```", re.M | re.S)
_SPAN = re.compile(r"`([^`\n]+)`")
# A whole code span that is a path: `core/`, `engine/loop.py`, `logcontext.py`.
_SPAN_PATH = re.compile(r"(?:[a-z_][a-z0-9_]*/)+(?:[a-z_][a-z0-9_]*\.py)?|[a-z_][a-z0-9_]*\.py")
# A module path inside a code block: engine/loop.py (a bare word like inputs/ is prose there).
_BLOCK_PATH = re.compile(r"(?<![\w/.])(?:[a-z_][a-z0-9_]*/)+[a-z_][a-z0-9_]*\.py\b")


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def source_paths(text: str) -> list[str]:
    """The source paths the doc names, in order of appearance, each once."""
    blocks = _FENCE.findall(text)
    prose = _FENCE.sub("", text)
    found = [span for span in _SPAN.findall(prose) if _SPAN_PATH.fullmatch(span)]
    found += [path for block in blocks for path in _BLOCK_PATH.findall(block)]
    return [p for p in dict.fromkeys(found) if not p.startswith(NOT_SOURCE)]


def exists(path: str) -> bool:
    target = PACKAGE / path.removeprefix("src/orchestrion/")
    return target.is_dir() if path.endswith("/") else target.is_file()


def written_layers(text: str) -> list[tuple[str, ...]]:
    """The first code block under '## Layers': one layer a line, siblings joined by '|'."""
    _, found, after = text.partition("\n## Layers\n")
    assert found, "docs/ARCHITECTURE.md has no '## Layers' section"
    block = _FENCE.search(after)
    assert block, "the '## Layers' section of docs/ARCHITECTURE.md has no code block"
    layers = []
    for line in block.group().splitlines()[1:-1]:
        # "cli | docs | testing     what they are": names, then two spaces, then the prose
        names = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]
        layers.append(tuple(name.strip() for name in names.split("|")))
    return layers


def test_the_source_paths_exist() -> None:
    paths = source_paths(_text())
    assert len(paths) > 20, "no source paths found: has the doc's form changed?"
    missing = [path for path in paths if not exists(path)]
    assert not missing, (
        "docs/ARCHITECTURE.md names paths that are not under src/orchestrion "
        "(moved or renamed? update the doc):\n" + "\n".join(f"  {p}" for p in missing)
    )


def test_the_layers_are_those_enforced() -> None:
    assert written_layers(_text()) == LAYERS, (
        "the layer order in docs/ARCHITECTURE.md ('## Layers') differs from LAYERS in "
        "tests/unit/test_layers.py: one line per layer, top down, siblings joined by '|'"
    )


def test_a_wrong_path_is_caught() -> None:
    text = "The loop (`engine/loop.py`) and `runtime/`.\n```\n  engine/gone.py  x/y\n```\n"
    paths = source_paths(text)
    assert paths == ["engine/loop.py", "runtime/", "engine/gone.py"]
    assert [p for p in paths if not exists(p)] == ["runtime/", "engine/gone.py"]
