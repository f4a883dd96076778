"""Which executions are classified, that is, have their values sealed at rest.

See ``encrypted.py`` for what makes an execution classified; ``Classification`` answers it
from the store, with a cache.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import ExecutionNotFound
from orchestrion.governance.encryption import is_encrypted
from orchestrion.store.base import ExecutionRecord, Store
from orchestrion.store.sealing import sealed_error

__all__ = ["Classification"]

_CACHE_LIMIT = 100_000


class Classification:
    """Which executions are classified (see the module docstring), cached.

    An execution's own answer comes from its definition (definitions never change) and its
    parent's; it can only change from False to True, when the execution starts or meets a
    classified child (``flip``). The first sealed value written after such a flip stays in
    the store as its mark: an execution met again after a restart that is not classified by
    its definition or parent is looked at once more (``_marked``). The execution cache is
    bounded (oldest entries go first) and refilled from the store on a miss.
    """

    def __init__(self, inner: Store, encrypts: Callable[[str], bool]) -> None:
        self._inner = inner
        self._encrypts = encrypts
        self._by_definition: dict[str, bool] = {}
        self._by_execution: dict[str, bool] = {}

    def known(self, execution_id: str) -> bool | None:
        return self._by_execution.get(execution_id)

    async def of(self, execution_id: str) -> bool:
        classified = self._by_execution.get(execution_id)
        if classified is None:
            try:
                record = await self._inner.get_execution(execution_id)
            except ExecutionNotFound:
                return False  # the adapter refuses the commit with its own error
            classified = await self.of_record(record, stored=True)
        return classified

    async def of_record(self, record: ExecutionRecord, *, stored: bool = False) -> bool:
        """``stored``: the record was read from the store (it may carry a mark)."""
        classified = self._by_execution.get(record.id)
        if classified is not None:
            return classified
        classified = await self._definition(record.definition_id)
        if not classified and record.parent_execution_id:
            classified = await self.of(record.parent_execution_id)
        if not classified and stored and record.status is not ExecutionStatus.PENDING:
            classified = await self._marked(record.id)
        self.remember(record.id, classified)
        return classified

    def flip(self, execution_id: str) -> None:
        """From now on ``execution_id`` is classified (it met a classified child)."""
        self.remember(execution_id, True)

    def remember(self, execution_id: str, classified: bool) -> None:
        cache = self._by_execution
        if execution_id not in cache and len(cache) >= _CACHE_LIMIT:
            del cache[next(iter(cache))]
        cache[execution_id] = classified

    async def _marked(self, execution_id: str) -> bool:
        """Whether an earlier process sealed something of this execution (it had flipped)."""
        for run in await self._inner.get_node_runs(execution_id):
            if is_encrypted(run.output) or sealed_error(run.error):
                return True
        return False

    async def _definition(self, definition_id: str) -> bool:
        found = self._by_definition.get(definition_id)
        if found is None:
            spec = (await self._inner.get_definition(definition_id)).spec
            listed = (spec.get("dag") or {}).get("nodes") or ()
            found = self._by_definition[definition_id] = any(
                self._encrypts(str(n.get("data_classification") or "public")) for n in listed
            )
        return found
