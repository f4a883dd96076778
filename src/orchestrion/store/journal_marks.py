"""How far the journal and the node logs go: the marks of ``Store.touched_since``."""

from __future__ import annotations

__all__ = ["TOUCHED_LIMIT", "Marks"]

Marks = tuple[int, int]
"""The largest ``seq`` of the journal and of the node logs (``Store.touched_since``)."""
TOUCHED_LIMIT = 1000  # executions ``touched_since`` names at most
