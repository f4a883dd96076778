"""The life of definition versions: list them, activate one, deprecate one.

A version is ``available`` when submitted, ``active`` once chosen, ``deprecated`` once retired
(``store/rules.py``). The active version of a name (the one activated, else the newest
available one) is what event triggers and schedules start, and what a start that names no
version runs; a start may still name any version, a deprecated one included. An execution
keeps the version it started with until it ends, whatever happens to the version meanwhile:
its state (node runs, outputs, retry counts) is only meaningful against the graph it ran, and a
new version may add, remove or rewire nodes, so moving a running execution could leave it
with nodes that never ran or outputs that no node produced. To move work to a new version,
activate it and start new executions (or let triggers do it); cancel the old ones if needed.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from orchestrion.engine.schedule_sync import sync_definition
from orchestrion.errors import ExecutionNotFound
from orchestrion.store import rules
from orchestrion.store.base import DefinitionRecord

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine

__all__ = ["MAX_VERSIONS", "VersionVerbs"]

MAX_VERSIONS = 1000
"""The most versions of one name listed at once."""


class VersionVerbs:
    """``Engine.versions``, ``Engine.activate``, ``Engine.deprecate``."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def versions(self, name: str) -> tuple[list[DefinitionRecord], str | None]:
        """Every version of ``name``, oldest first, and the id of the active one (None: every
        version is deprecated). Raises ``ExecutionNotFound`` for an unknown name."""
        store = self._engine.store
        records = await store.list_definitions(name, limit=MAX_VERSIONS)
        if not records:
            raise ExecutionNotFound(f"definition '{name}' not found")
        try:
            active: str | None = (await store.find_definition(name)).id
        except ExecutionNotFound:
            active = None
        return records, active

    async def set_status(
        self, name: str, version: str, status: str, by: str | None
    ) -> DefinitionRecord:
        engine = self._engine
        now = time.time()
        record = await engine.store.set_definition_status(name, version, status, now, by)
        engine.definition_changed()
        try:
            active = await engine.store.find_definition(name)
        except ExecutionNotFound:
            active = record  # no active version left: its schedules go
        await sync_definition(engine.store, active, now)
        return record

    async def activate(self, name: str, version: str, by: str | None) -> DefinitionRecord:
        return await self.set_status(name, version, rules.ACTIVE, by)

    async def deprecate(self, name: str, version: str, by: str | None) -> DefinitionRecord:
        return await self.set_status(name, version, rules.DEPRECATED, by)
