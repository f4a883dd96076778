"""Definitions the API has read and checked, kept by their text for the next submit of it.

A client that submits the same definition again and again (a service creating executions of
its workflow) had it parsed, converted, validated and hashed on every request: a sixth of a
submit's CPU for the bench's 3-node workflow. A text already checked under the same handler
registry, the same governance policy and the same definition limits gives the same
``LoadedDefinition``, which is kept (the last ``_SIZE`` texts up to ``_MAX_CHARS`` long) and
handed out again; it is never changed by those it is handed to. A text that fails its checks
is not kept: it is checked again each time, and fails alike. The store is still asked for the
stored version each time (``Definitions.store``), so what a submit names is what it named
before.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orchestrion.definition.loader import LoadedDefinition
    from orchestrion.engine.facade import Engine

__all__ = ["CheckedDefinitions"]

_SIZE = 64
_MAX_CHARS = 8 * 1024  # the definitions checked on the event loop (api/routes/workflows.py)

# What a check depended on: the registry and how many names it had, the governance (frozen)
# and the limits object (kept while the policy is the same), compared by identity.
_Under = tuple[object, int, object, object]


class CheckedDefinitions:
    """The definitions last checked, by (text, format), with what they were checked under."""

    __slots__ = ("_kept",)

    def __init__(self) -> None:
        self._kept: OrderedDict[tuple[str, str | None], tuple[_Under, LoadedDefinition]] = (
            OrderedDict()
        )

    def get(self, text: str, fmt: str | None, engine: Engine) -> LoadedDefinition | None:
        """The definition ``text`` was checked into, if it was under what holds now."""
        if len(text) > _MAX_CHARS:  # never kept; and larger ones are checked on a thread
            return None
        kept = self._kept.get((text, fmt))
        if kept is None:
            return None
        under, loaded = kept
        now = _under(engine)
        same = under[0] is now[0] and under[1] == now[1]
        if not (same and under[2] is now[2] and under[3] is now[3]):
            del self._kept[text, fmt]
            return None
        self._kept.move_to_end((text, fmt))
        return loaded

    def put(self, text: str, fmt: str | None, engine: Engine, loaded: LoadedDefinition) -> None:
        """Keep what ``text`` was checked into (small texts only)."""
        if len(text) > _MAX_CHARS:
            return
        self._kept[text, fmt] = (_under(engine), loaded)
        if len(self._kept) > _SIZE:
            self._kept.popitem(last=False)


def _under(engine: Engine) -> _Under:
    registry = engine.registry
    return (registry, registry.changes, engine.governance, engine.definition_limits)
