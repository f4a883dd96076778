"""The engine's own events: ``workflow.completed`` and ``workflow.failed`` start followers.

When an execution completes or fails, the engine that drove it emits ``workflow.completed`` or
``workflow.failed`` for its definition, with the finished execution's id as the event id: a
finished execution starts each follower at most once, whichever process fires it. Chains
of such starts stop after ``MAX_CHAIN`` links (a workflow that follows one that follows it
would otherwise run forever).

Nothing owed is lost: the commit that ends an execution whose workflow has followers records
them as owed (``CommitBatch.follows``, the store's ``follows_owed``), and the row is settled
only once they are started. An engine that stops before (its own work done, a ``kill -9``)
leaves the row: the next engine that resumes work on the database starts them (at its start,
then every lease renewal for rows older than a lease), with the same idempotency keys, so a
follower is never started twice. ``Engine.settle_followers`` waits for a whole chain (the
``run`` and ``emit`` commands wait for it as they wait for their own executions).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from orchestrion.core.record_types import RecordType
from orchestrion.core.states import ExecutionStatus
from orchestrion.errors import ExecutionError, ExecutionNotFound, OrchestrionError
from orchestrion.governance.trust import Trust

if TYPE_CHECKING:
    from orchestrion.core.events import Record
    from orchestrion.core.result import ExecutionResult
    from orchestrion.engine.compiled import CompiledWorkflow
    from orchestrion.engine.emitting import EventTriggers
    from orchestrion.engine.parts import EngineParts
    from orchestrion.store.base import ExecutionRecord

__all__ = ["ENDING_OF", "MAX_CHAIN", "MAX_CHAIN_WIDTH", "Followers"]

logger = logging.getLogger(__name__)

MAX_CHAIN = 16
"""Most workflow.completed/failed links one chain of executions may have."""

MAX_CHAIN_WIDTH = 256
"""Most executions one link of a chain may multiply into (see ``_follow``)."""
# Labels a follower carries, set by the engine only: its link's number in its chain (the
# execution the chain began with, started otherwise, has none: 0), and its share of the
# chain's width.
_DEPTH = "chain_depth"
_WIDTH = "chain_width"

_STARTED = RecordType.EXECUTION_STARTED
_ENDINGS = {
    RecordType.EXECUTION_COMPLETED: "workflow.completed",
    RecordType.EXECUTION_FAILED: "workflow.failed",
}
ENDING_OF = {
    ExecutionStatus.COMPLETED: "workflow.completed",
    ExecutionStatus.FAILED: "workflow.failed",
}
"""The event an execution that ends in this status fires."""


class Followers:
    """Starts the followers of executions that end (see the module docstring)."""

    def __init__(self, parts: EngineParts, events: EventTriggers) -> None:
        self._parts = parts
        self._events = events
        self._following: dict[str, asyncio.Task[None]] = {}  # by the ended execution's id
        # While a command waits for chains (``watch``): ended execution -> followers started.
        self._chains: dict[str, list[str]] | None = None

    def owed(self, ending: str, workflow: str) -> bool:
        """Whether an end of ``workflow`` may owe followers (recorded with its commit)."""
        return not self._events.subscriptions.known_none(ending, workflow)

    def on_records(self, execution_id: str, records: list[Record]) -> None:
        """Record listener: an execution that just completed or failed fires its event."""
        ending = next((_ENDINGS[r.type] for r in records if r.type in _ENDINGS), None)
        subscriptions = self._events.subscriptions
        if ending is None:
            if records and records[0].type == _STARTED:
                # Read the list of followers now, so that the end finds it fresh.
                work = subscriptions.warm()
                if work is not None:
                    self._spawn("", work)
            return
        live = self._parts.loop.live.get(execution_id)
        if live is None:
            return  # owed in the store: the next pass over what is owed starts them
        spec = live.compiled.plan.spec
        if subscriptions.known_none(ending, spec.name):
            return
        payload = _payload(live.compiled, live.record, live.outputs, live.machine.error, ending)
        self._spawn(execution_id, self._follow(ending, payload, live.record))

    def _spawn(self, execution_id: str, work: Any) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(work)
        key = execution_id or f"warm:{id(task)}"  # a read of the list (``warm``)
        self._following[key] = task
        task.add_done_callback(lambda _: self._following.pop(key, None))
        return task

    async def follow_owed(self, older_than: float = 0.0) -> None:
        """Start what the store says is owed, recorded at least ``older_than`` s ago (the
        follows under way here are left to finish)."""
        store = self._parts.engine.store
        spawned: list[asyncio.Task[None]] = []
        for execution_id, ending in await store.owed_follows(time.time() - older_than):
            if execution_id in self._following:
                continue
            try:
                record = await store.get_execution(execution_id)
                compiled = await self._parts.definitions.compiled_for(record.definition_id)
                outputs = await store.get_outputs(execution_id)
            except ExecutionNotFound:  # purged meanwhile: nothing to follow
                await store.settle_follow(execution_id)
                continue
            payload = _payload(compiled, record, outputs, record.error, ending)
            spawned.append(self._spawn(execution_id, self._follow(ending, payload, record)))
        await asyncio.gather(*spawned, return_exceptions=True)

    async def _follow(self, ending: str, payload: dict[str, Any], record: ExecutionRecord) -> None:
        try:
            started = await self._start_followers(ending, payload, record)
        except ExecutionError as exc:  # the engine stops: the next one starts them
            logger.warning(
                "%s of execution %s started nothing yet (%s): owed until an engine runs",
                ending, record.id, exc,
            )  # fmt: skip
            return
        except Exception:
            logger.exception("%s of execution %s started nothing yet", ending, record.id)
            return
        if self._chains is not None:
            self._chains[record.id] = started
        try:
            await self._parts.engine.store.settle_follow(record.id)
        except OrchestrionError:  # settled by the next pass: the starts are idempotent
            logger.warning("could not settle the followers of %s", record.id, exc_info=True)

    async def _start_followers(
        self, ending: str, payload: dict[str, Any], record: ExecutionRecord
    ) -> list[str]:
        """Start the followers; the ids of the executions they are (none: nothing to do)."""
        name = str(payload["workflow"])
        followers = await self._events.subscriptions.of(ending, name, fresh=False)
        if not followers:
            return []
        depth = _label_of(record, _DEPTH, 0)
        if depth >= MAX_CHAIN:
            logger.warning(
                "execution %s ends a chain of %d workflow triggers: its %s starts nothing",
                record.id, MAX_CHAIN, ending,
            )  # fmt: skip
            return []
        # Followers of followers multiply: A followed by B1 and B2, each followed by A,
        # doubles every two links. Each follower carries its share of the chain's width
        # (its parent's times the number of workflows the parent's end started), and no
        # level of one chain exceeds MAX_CHAIN_WIDTH executions, so a chain is at most
        # MAX_CHAIN * MAX_CHAIN_WIDTH executions however its workflows follow each other.
        width = _label_of(record, _WIDTH, 1) * len({f.definition.id for f in followers})
        if width > MAX_CHAIN_WIDTH:
            logger.warning(
                "execution %s: its %s would start %d followers, making its chain wider than"
                " %d executions: it starts none",
                record.id, ending, len(followers), MAX_CHAIN_WIDTH,
            )  # fmt: skip
            return []
        # A follower's inputs come from the execution that ended: no more trusted than it.
        trust = Trust.of(record.trust)
        labels = {_DEPTH: depth + 1, _WIDTH: width}
        emitted = await self._events.emit_own(
            ending, payload, record.id, name, followers, trust, labels
        )
        for skip in emitted.skipped:
            logger.warning(
                "%s of execution %s did not start '%s': %s",
                ending, record.id, skip.workflow, skip.message,
            )  # fmt: skip
        return [start.execution_id for start in emitted.executions]

    def watch(self) -> None:
        """Keep which followers each end started, for ``settle_chain``."""
        if self._chains is None:
            self._chains = {}

    def chain_roots(self) -> list[str]:
        """The ended executions whose followers were started here since ``watch``."""
        return [] if self._chains is None else list(self._chains)

    async def settle_chain(self, ended: str) -> list[str]:
        """Wait for the follow of ``ended`` (settled already); the followers it started."""
        task = self._following.get(ended)
        if task is not None:
            await asyncio.gather(task, return_exceptions=True)
        return [] if self._chains is None else self._chains.pop(ended, [])

    async def settle_chains(self, roots: list[str]) -> list[ExecutionResult]:
        """Wait for the followers of ``roots`` (settled already), theirs, and so on, each until
        it is final or waits for a person (``watch`` was called before the roots started);
        how each ended, in the order they were started."""
        results: list[ExecutionResult] = []
        queue = list(roots)
        while queue:
            for follower in await self.settle_chain(queue.pop(0)):
                results.append(await self._parts.engine.settle(follower))
                queue.append(follower)
        return results

    async def close(self) -> None:
        """Let the ends being followed finish starting their followers."""
        if self._following:
            await asyncio.gather(*list(self._following.values()), return_exceptions=True)


def _payload(
    compiled: CompiledWorkflow,
    record: ExecutionRecord,
    outputs: dict[str, Any],
    error: Any,
    ending: str,
) -> dict[str, Any]:
    spec = compiled.plan.spec
    classified = any(n.data_classification.value != "public" for n in spec.dag.nodes)
    return {
        "execution_id": record.id,
        "workflow": spec.name,
        "version": spec.version,
        "definition_id": record.definition_id,
        "status": ending.split(".", 1)[1],
        "correlation_id": record.correlation_id,
        # A classified result stays with its execution (sealed there): followers read it
        # through the API with the rights that takes.
        "result": None if classified else compiled.result_from(outputs),
        "error": _error_of(error, classified),
    }


def _error_of(error: Any, classified: bool) -> Any:
    """The ended execution's error as followers get it: a classified workflow's message may
    quote a classified value (a node's input in a URL, say), so only what kind of failure it
    was and which nodes failed go on, as its result does not."""
    if not classified or not isinstance(error, Mapping):
        return error
    kept = {key: error[key] for key in ("category", "nodes") if key in error}
    return {**kept, "message": "withheld: the workflow has pii or phi nodes"}


def _label_of(record: ExecutionRecord, label: str, default: int) -> int:
    value = record.labels.get(label) if isinstance(record.labels, dict) else None
    return value if isinstance(value, int) and value >= default else default
