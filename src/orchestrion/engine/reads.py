"""Read-only queries of an engine's state: executions, definitions, events, node runs.

The API, the record feed and the CLI read through ``Engine.reads`` instead of reaching into
the engine's store, so the store stays the engine's own: how records are kept (encrypted at
rest, in which database) is decided in one place, and whatever reads them gets the same
answers the engine itself acts on (errors decrypted, unknown ids as ``ExecutionNotFound``).
None of these queries changes anything.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from orchestrion.errors import ExecutionNotFound, no_such_node
from orchestrion.store.audit import AuditSigner
from orchestrion.store.base import (
    DefinitionRecord,
    EventRecord,
    ExecutionRecord,
    LogFilter,
    LogLineRecord,
    Marks,
    NodeRunRecord,
    Store,
)

if TYPE_CHECKING:
    from orchestrion.engine.dead_nodes import ExhaustedNodes

__all__ = ["EngineReads"]


class EngineReads:
    """The queries; ``store`` gives the engine's store as it is now (it is opened, and
    wrapped for encryption at rest, when the engine starts)."""

    def __init__(
        self, store: Callable[[], Store], signer: Callable[[], AuditSigner | None] = lambda: None
    ) -> None:
        self._store = store
        self._signer = signer  # the audit trail's, for the one write here: a dead letter's drop

    async def execution(self, execution_id: str) -> ExecutionRecord:
        """The execution's record; ``ExecutionNotFound`` for an unknown id."""
        return await self._store().get_execution(execution_id)

    async def node_runs(self, execution_id: str) -> list[NodeRunRecord]:
        """The latest run of each node of the execution that has one."""
        return await self._store().get_node_runs(execution_id)

    async def events(
        self,
        execution_id: str | None,
        after: int = 0,
        limit: int = 100,
        types: list[str] | None = None,
    ) -> list[EventRecord]:
        """Journal events after sequence number ``after``, oldest first: of one execution,
        or of all of them (``None``), optionally only those of ``types``."""
        return await self._store().list_events(execution_id, after, limit, types)

    async def node_logs(self, flt: LogFilter) -> list[LogLineRecord]:
        """Log lines node attempts of one execution wrote (``LogFilter``), oldest first."""
        return await self._store().list_node_logs(flt)

    async def check_node(self, record: ExecutionRecord, node_id: str) -> None:
        """Raise ``ExecutionNotFound`` naming ``node_id`` unless the execution's definition
        has such a node: a read of a node that is not there is not an empty answer. It reads
        the definition, so callers ask only when what they found was empty."""
        spec = (await self.definition(record.definition_id)).spec
        nodes = [str(node.get("id")) for node in spec["dag"]["nodes"]]
        if node_id not in nodes:
            raise ExecutionNotFound(no_such_node(record.id, node_id, nodes))

    async def journal_head(self) -> int:
        """The seq of the newest journal event (0 when there is none)."""
        return await self._store().journal_head()

    async def touched_since(self, marks: Marks | None) -> tuple[Marks, set[str] | None]:
        """The journal's and node logs' marks now, and the executions written since ``marks``
        (``Store.touched_since``: None when unknown or too many)."""
        return await self._store().touched_since(marks)

    async def definition(self, definition_id: str) -> DefinitionRecord:
        """A stored definition version by id; ``ExecutionNotFound`` for an unknown one."""
        return await self._store().get_definition(definition_id)

    async def find_definition(self, name: str, version: str | None = None) -> DefinitionRecord:
        """A stored definition by name: the active version (``engine/versions.py``), or the
        one given."""
        return await self._store().find_definition(name, version)

    async def definitions(
        self, name: str | None = None, limit: int = 100, offset: int = 0
    ) -> list[DefinitionRecord]:
        """Stored definition versions, all or those of one name."""
        return await self._store().list_definitions(name, limit, offset)

    async def check(self) -> None:
        """Raise if the store cannot answer a query now (the readiness probe)."""
        await self._store().list_definitions(limit=1)

    def dead_nodes(self) -> ExhaustedNodes:
        """The dead-lettered nodes: listed and found from node runs; a drop is recorded as a
        request in the journal, as other control requests are, and changes no state."""
        from orchestrion.engine.dead_nodes import ExhaustedNodes  # here: runs seldom need it

        return ExhaustedNodes(self._store(), self._signer())

    def sealed(self, execution_id: str) -> bool:
        """Whether the execution's classified values are sealed at rest (encrypted), so its
        error texts must not be logged in the clear."""
        from orchestrion.store.encrypted import EncryptedStore

        store = self._store()
        return (
            isinstance(store, EncryptedStore)
            and store.ring is not None
            and store.classified(execution_id)
        )
