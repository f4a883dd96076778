"""How far the journal and the node logs go (``Store.journal_head``, ``Store.touched_since``),
and the forwarding of both by a store that wraps another: numbers and ids, nothing to seal."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrion.store.base import Store

__all__ = ["TOUCHED_LIMIT", "ForwardMarks", "Marks"]

Marks = tuple[int, int]
"""The largest ``seq`` of the journal and of the node logs (``Store.touched_since``)."""
TOUCHED_LIMIT = 1000  # executions ``touched_since`` names at most


class ForwardMarks:
    """``journal_head`` and ``touched_since`` handed over to ``forward_marks()``."""

    def forward_marks(self) -> Store:
        raise NotImplementedError

    async def journal_head(self) -> int:
        return await self.forward_marks().journal_head()

    async def touched_since(self, marks: Marks | None) -> tuple[Marks, set[str] | None]:
        return await self.forward_marks().touched_since(marks)
