"""The definition side of ``MemoryStore``: versions by name, the active one, content hashes."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from orchestrion.errors import ExecutionError, ExecutionNotFound, StoreError
from orchestrion.governance.trust import Trust
from orchestrion.store import rules
from orchestrion.store.base import DefinitionRecord

__all__ = ["MemoryDefinitions"]


class MemoryDefinitions:
    """Definitions in a dict (insertion order is their age); records are copied in and out,
    as a database would."""

    def __init__(self) -> None:
        self._definitions: dict[str, DefinitionRecord] = {}  # insertion order = age
        self._by_name_version: dict[tuple[str, str], str] = {}

    async def put_definition(self, record: DefinitionRecord) -> DefinitionRecord:
        existing_id = self._by_name_version.get((record.name, record.version))
        if existing_id is not None:
            existing = self._definitions[existing_id]
            if existing.content_hash != record.content_hash:
                raise ExecutionError(
                    f"definition '{record.name}' version '{record.version}' already exists"
                    " with different content"
                )
            return replace(existing)
        if record.id in self._definitions:
            raise StoreError(f"definition id '{record.id}' already exists")
        self._definitions[record.id] = replace(record, trust=Trust.of(record.trust))
        self._by_name_version[(record.name, record.version)] = record.id
        return record

    async def get_definition(self, definition_id: str) -> DefinitionRecord:
        try:
            return replace(self._definitions[definition_id])
        except KeyError:
            raise ExecutionNotFound(f"definition '{definition_id}' not found") from None

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        if version is not None:
            definition_id = self._by_name_version.get((name, version))
            if definition_id is None:
                raise ExecutionNotFound(f"definition '{name}' version '{version}' not found")
            return replace(self._definitions[definition_id])
        versions = [d for d in self._definitions.values() if d.name == name]
        if not versions:
            raise ExecutionNotFound(f"definition '{name}' not found")
        marked = [d for d in versions if d.status == rules.ACTIVE]
        newest = self._newest(marked or [d for d in versions if d.status == rules.AVAILABLE])
        if newest is None:
            raise ExecutionNotFound(rules.no_active_version(name))
        return newest

    async def set_definition_status(
        self, name: str, version: str, status: str, at: float, by: str | None = None
    ) -> DefinitionRecord:
        if status not in rules.DEFINITION_STATUSES:
            raise ExecutionError(f"unknown definition status {status!r}")
        definition_id = self._by_name_version.get((name, version))
        if definition_id is None:
            raise ExecutionNotFound(f"definition '{name}' version '{version}' not found")
        rules.check_status_change(name, version, self._definitions[definition_id].status, status)
        if status == rules.ACTIVE:  # at most one active version per name
            for other in list(self._definitions.values()):
                if (
                    other.name == name
                    and other.status == rules.ACTIVE
                    and other.id != definition_id
                ):
                    self._definitions[other.id] = replace(
                        other, status=rules.AVAILABLE, status_changed_at=at, status_changed_by=by
                    )
        record = replace(
            self._definitions[definition_id],
            status=status,
            status_changed_at=at,
            status_changed_by=by,
        )
        self._definitions[definition_id] = record
        return replace(record)

    async def find_definition_by_hash(
        self, name: str, content_hash: str
    ) -> DefinitionRecord | None:
        return self._newest(
            d
            for d in self._definitions.values()
            if d.name == name and d.content_hash == content_hash
        )

    async def list_definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        found = [d for d in self._definitions.values() if name is None or d.name == name]
        found.sort(key=lambda d: d.name)  # stable: versions stay in insertion order
        return [replace(d) for d in found[offset : offset + limit]]

    async def definition_heads(self) -> list[tuple[str, str]]:
        # Oldest first, the stored order breaking ties: a later row is the newer version.
        ordered = sorted(self._definitions.values(), key=lambda record: record.created_at)
        return rules.active_heads((d.name, d.id, d.status) for d in ordered)

    async def next_version(self, name: str) -> str:
        return rules.next_version(d.version for d in self._definitions.values() if d.name == name)

    @staticmethod
    def _newest(candidates: Iterable[DefinitionRecord]) -> DefinitionRecord | None:
        newest: DefinitionRecord | None = None
        for d in candidates:
            # ``>=``: among equal timestamps the later insertion is the newer one.
            if newest is None or d.created_at >= newest.created_at:
                newest = d
        return None if newest is None else replace(newest)
