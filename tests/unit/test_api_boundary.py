"""The API and the record feed reach the engine's state through the engine only.

They read through ``Engine.reads`` and act through the engine's verbs; the store is the
engine's own (docs/ARCHITECTURE.md), so no module of theirs names ``<engine>.store``.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "src" / "orchestrion"


def _store_reaches(source: str, label: str) -> list[str]:
    """Where ``source`` names the ``store`` of something called ``engine``."""
    found = []
    for node in ast.walk(ast.parse(source, label)):
        if not (isinstance(node, ast.Attribute) and node.attr == "store"):
            continue
        owner = node.value
        name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
        if name == "engine":
            found.append((node.lineno, f"{label}:{node.lineno}"))
    return [where for _, where in sorted(found)]


def test_the_api_and_the_feed_do_not_reach_into_the_engines_store() -> None:
    paths = [*sorted((PACKAGE / "api").rglob("*.py")), PACKAGE / "observability" / "feed.py"]
    reaches = [
        reach
        for path in paths
        for reach in _store_reaches(path.read_text(), str(path.relative_to(PACKAGE)))
    ]
    assert not reaches, "use Engine.reads (engine/reads.py) or an engine verb:\n" + "\n".join(
        reaches
    )


def test_a_reach_is_caught() -> None:
    source = "async def f(ctx, engine):\n    await ctx.engine.store.get_execution('x')\n"
    source += "    return engine.store, ctx.engine.reads, store.engine\n"
    assert _store_reaches(source, "sample.py") == ["sample.py:2", "sample.py:3"]
