"""Every module of the package stays small enough to read whole: at most 500 lines. One
that grows past it is split into modules of one concept each (the layout shows the parts)."""

from __future__ import annotations

from pathlib import Path

import orchestrion

MOST_LINES = 500


def test_every_module_is_at_most_500_lines() -> None:
    root = Path(orchestrion.__file__).resolve().parent
    too_long = {
        str(path.relative_to(root)): lines
        for path in sorted(root.rglob("*.py"))
        if (lines := len(path.read_text(encoding="utf-8").splitlines())) > MOST_LINES
    }
    assert too_long == {}, f"split these modules (lines): {too_long}"
