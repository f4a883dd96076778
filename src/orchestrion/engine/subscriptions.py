"""Which workflows an event starts: the event triggers of the active definitions.

The active definition of a name is the version activated, else its newest available version
(``store/rules.py``; a deprecated one never): a version that drops a trigger unsubscribes the
name once it is active. Definitions live in the store, which other processes write too (the
API in scale-out mode, a second terminal), so the list of each name's active version (names
and ids only, ``Store.definition_heads``) is read from the store at each event sent; the end
of every execution, much more frequent, may use a list up to a second old (one submitted or
activated here is seen at once). A version's record is read and its triggers parsed once,
since a stored version's content never changes: an event costs one small query however many
versions are stored.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from orchestrion.definition.triggers import EventTrigger, event_triggers
from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import DefinitionRecord, Store

__all__ = ["CACHE_SECONDS", "Subscriber", "Subscriptions"]

logger = logging.getLogger(__name__)

CACHE_SECONDS = 1.0
"""How old the list of active definitions may be when an execution's end is followed."""


@dataclass(frozen=True, slots=True)
class Subscriber:
    """One event trigger of the active version of a definition."""

    definition: DefinitionRecord
    trigger: EventTrigger


class Subscriptions:
    """Finds the subscribers of an event type (see the module docstring)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store
        self._parsed: dict[str, list[EventTrigger]] = {}
        self._records: dict[str, DefinitionRecord] = {}  # by id: stored versions never change
        self._cached: tuple[float, list[DefinitionRecord]] | None = None
        self._warming = False

    def forget(self, submitted: DefinitionRecord | None = None) -> None:
        """A definition was submitted here: read the list again at the next event (the
        ``submitted`` record need not be read back)."""
        self._cached = None
        if submitted is not None:
            self._records[submitted.id] = submitted

    def submitted(self, record: DefinitionRecord, *, new: bool) -> None:
        """A definition was submitted here: a version it stored is read at the next event
        (``forget``). One stored before, submitted again, changes nothing the list holds
        when the list has it already: kept (a service submitting its workflow before every
        execution would otherwise have the list read again at every execution)."""
        cached = self._cached
        if new or cached is None or all(each.id != record.id for each in cached[1]):
            self.forget(record)

    def known_none(self, event_type: str, source: str | None) -> bool:
        """Whether a list young enough for ``fresh=False`` says nobody listens: then an
        execution's end costs no task and no read."""
        cached = self._cached
        if cached is None or time.monotonic() - cached[0] > CACHE_SECONDS:
            return False
        return not self._matching(cached[1], event_type, source)

    def warm(self) -> Coroutine[Any, Any, None] | None:
        """A read of the list for ``known_none`` and the ends to come, unless the list is
        young enough or a read is under way: what an execution's start asks for."""
        cached = self._cached
        if self._warming or (
            cached is not None and time.monotonic() - cached[0] <= CACHE_SECONDS / 2
        ):
            return None
        self._warming = True
        return self._warm()

    async def _warm(self) -> None:
        try:
            await self.of("", fresh=True)
        except Exception:  # the ends read it again themselves
            logger.debug("reading the event triggers failed", exc_info=True)
        finally:
            self._warming = False

    async def of(
        self, event_type: str, source: str | None = None, *, fresh: bool = True
    ) -> list[Subscriber]:
        """The triggers listening to ``event_type`` (from the workflow ``source``, for the
        engine's own ``workflow.*`` events), by definition name. ``fresh=False`` (the end of
        every execution asks) may use a list read up to ``CACHE_SECONDS`` ago."""
        now = time.monotonic()
        cached = self._cached
        if fresh or cached is None or now - cached[0] > CACHE_SECONDS:
            cached = (now, await self._active())
            self._cached = cached
        return self._matching(cached[1], event_type, source)

    def _matching(
        self, active: list[DefinitionRecord], event_type: str, source: str | None
    ) -> list[Subscriber]:
        found: list[Subscriber] = []
        for definition in active:
            for trigger in self._triggers(definition):
                if trigger.event_type == event_type and trigger.source == source:
                    found.append(Subscriber(definition, trigger))
        return found

    async def _active(self) -> list[DefinitionRecord]:
        """The latest version of every definition name. Only the (name, id) of each is read
        at every event: a stored version never changes, so its record is read once."""
        store = self._store()
        active = []
        for _name, definition_id in await store.definition_heads():
            record = self._records.get(definition_id)
            if record is None:
                try:
                    record = await store.get_definition(definition_id)
                except ExecutionNotFound:  # removed since the heads were read
                    continue
                self._records[definition_id] = record
            active.append(record)
        # Only the newest versions are kept: older ones are never asked about again.
        current = {record.id for record in active}
        self._records = {i: r for i, r in self._records.items() if i in current}
        self._parsed = {i: p for i, p in self._parsed.items() if i in current}
        return active

    def _triggers(self, definition: DefinitionRecord) -> list[EventTrigger]:
        parsed = self._parsed.get(definition.id)
        if parsed is None:
            raw = definition.spec.get("triggers")
            parsed = event_triggers(raw if isinstance(raw, list) else [])
            self._parsed[definition.id] = parsed
        return parsed
