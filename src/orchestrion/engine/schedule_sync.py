"""Schedules from definitions: the scheduled triggers of each name's active version.

A schedule's id is ``<definition name>:<trigger name>``. The active version (``store/rules.py``:
the one activated, else the newest available) owns its name's schedules: a version that becomes
active takes them over (same id: their state and cursor are kept), and a schedule it no longer
declares is deleted. Other versions declare nothing; a name whose versions are all deprecated
has no schedule left.
"""

from __future__ import annotations

from typing import Any

from orchestrion.errors import ExecutionNotFound
from orchestrion.store.base import DefinitionRecord, Store
from orchestrion.store.schedules import ScheduleRecord, ScheduleState

__all__ = ["schedule_id", "schedules_of", "sync_all", "sync_definition"]


def schedule_id(definition_name: str, trigger_name: str) -> str:
    """The id of the schedule a definition's scheduled trigger becomes."""
    return f"{definition_name}:{trigger_name}"


def schedules_of(definition: DefinitionRecord, now: float) -> list[ScheduleRecord]:
    """The schedules ``definition`` declares (its ``triggers`` of type ``scheduled``)."""
    triggers: Any = definition.spec.get("triggers") or ()
    if not triggers or not isinstance(triggers, list | tuple):
        return []
    from orchestrion.definition.schedules import scheduled_triggers  # here: few have triggers

    return [
        ScheduleRecord(
            id=schedule_id(definition.name, spec.name),
            definition_name=definition.name,
            definition_id=definition.id,
            trigger=spec.name,
            spec=spec.model_dump(mode="json"),
            created_at=now,
            updated_at=now,
        )
        for spec in scheduled_triggers(tuple(t for t in triggers if isinstance(t, dict)))
    ]


async def sync_definition(
    store: Store,
    definition: DefinitionRecord,
    now: float,
    stored: list[ScheduleRecord] | None = None,
) -> None:
    """Make the store's schedules of ``definition.name`` those of its active version (a no-op
    when ``definition`` is not the active one). ``stored``: the store's schedules, if read
    already."""
    try:
        active: DefinitionRecord | None = await store.find_definition(definition.name)
    except ExecutionNotFound:
        active = None  # every version is deprecated: no schedule is left
    if active is not None and active.id != definition.id:
        return
    wanted = schedules_of(active, now) if active is not None else []
    for record in wanted:
        await store.sync_schedule(record)
    keep = {record.id for record in wanted}
    for existing in stored if stored is not None else await store.list_schedules():
        if existing.definition_name == definition.name and existing.id not in keep:
            await store.set_schedule_state(existing.id, ScheduleState.DELETED, now)


async def sync_all(store: Store, now: float, synced: set[str] | None = None) -> None:
    """``sync_definition`` for the active version of every stored definition name.

    ``synced``: the ids of versions already synced (by this caller): syncing one again
    changes nothing, so only newly active versions are read, and a pass costs one small query
    however many versions are stored. The ids synced now are added to it."""
    heads = await store.definition_heads()
    fresh = [(name, i) for name, i in heads if synced is None or i not in synced]
    if not fresh:
        return
    stored = await store.list_schedules()
    for _name, definition_id in fresh:
        await sync_definition(store, await store.get_definition(definition_id), now, stored)
        if synced is not None:
            synced.add(definition_id)
