"""Child executions: what the engine does for ``workflow`` nodes and sub-workflows in a map.

A ``workflow`` node starts a child whose idempotency key derives from the node attempt's key
(a re-run finds the same child) and parks (``Wait("child")``). When the child finishes, the
parent node is resolved with its result or its failure; an outcome that arrives before the
parent's wait is committed is kept until it is. Stopping the parent node cancels the child,
one whose start was still under way included; a start that finds its node stopped (before or
after it made the child) cancels the child itself, so a cancel that looked for it too early
cannot leave it running. How deep and wide children may go is ``nesting.py``'s.
Inside a ``map``, the map's attempt itself awaits each item's child.

A parent driven by another process (each was taken over by a different survivor of a crash)
is told through the journal: the commit that ends the child also records a ``child_ended``
control request on the parent, which the parent's owner reads as it reads every request and
applies as the outcome it would have made itself; a parent nobody drives by then resolves its
wait when it is taken over (recovery runs its node again, which finds the child ended).

A child that this process did not start (its parent was loaded here after a crash, or by a
``cancel`` from another terminal) is found through the journal, where the parent node's wait
names it, or through its own row, which names the parent node before that wait is committed
(the process that made it was killed in between); it is cancelled through the engine's
control path: claimed when its owner is gone, asked of its owner otherwise.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from orchestrion.core.events import CancelNode, CancelRequested, ErrorInfo, WaitResolved
from orchestrion.core.idempotency import bounded_key
from orchestrion.core.states import FINAL_EXECUTION_STATES, ExecutionStatus, NodeState
from orchestrion.engine import lineage
from orchestrion.engine.ids import new_event_id
from orchestrion.errors import (
    DefinitionError,
    ErrorCategory,
    ExecutionNotFound,
    OrchestrionError,
    PermanentNodeError,
)
from orchestrion.handlers.base import NodeContext, Wait
from orchestrion.store.base import CommitBatch, DefinitionRecord, ExecutionRecord, JournalRequest

if TYPE_CHECKING:
    from orchestrion.engine.facade import Engine
    from orchestrion.engine.live import Action
    from orchestrion.engine.starting import Starts
    from orchestrion.handlers.subworkflow import WorkflowConfig

__all__ = ["CHILD_ENDED", "ChildExecutions"]

logger = logging.getLogger(__name__)

CHILD_ENDED = "child_ended"
"""The verb of the control request that tells a parent's owner its child ended."""


class ChildExecutions:
    """Links parents and children of one engine, and carries outcomes between them."""

    def __init__(self, engine: Engine, starts: Callable[[], Starts]) -> None:
        self._engine = engine
        self._starts = starts
        self._children: dict[tuple[str, str], str] = {}  # (parent, node) -> child execution
        self._early: dict[tuple[str, str], WaitResolved] = {}
        self._stopping: set[asyncio.Future[None]] = set()
        self._unfinished: dict[str, asyncio.Future[list[ExecutionRecord]]] = {}  # by parent
        self._told: set[str] = set()  # children whose end is journalled for their parent
        self._telling: set[asyncio.Future[None]] = set()

    async def start(self, ctx: NodeContext, config: WorkflowConfig) -> Any:
        """The ``workflow`` handler's way in: start (or find) the child and wait for it."""
        engine = self._engine
        try:
            definition = await engine.store.find_definition(config.workflow, config.version)
        except ExecutionNotFound as exc:
            version = f" version '{config.version}'" if config.version else ""
            raise PermanentNodeError(
                f"no stored workflow '{config.workflow}'{version}: submit it first",
                category=ErrorCategory.CONFIG,
            ) from exc
        if self._parent_stopped_here(ctx):
            raise PermanentNodeError(_GONE, category=ErrorCategory.PERMANENT)
        starting = asyncio.ensure_future(self._start(ctx, definition, config))
        try:
            record = await asyncio.shield(starting)
        except asyncio.CancelledError:
            # The parent node stopped while its child was being created (its row may already
            # be there): the child must not run on without it.
            self._cancel_once_started(ctx.execution_id, ctx.node_id, starting)
            raise
        except DefinitionError as exc:  # e.g. beyond the definition limits now in force
            raise PermanentNodeError(str(exc), category=ErrorCategory.CONFIG) from exc
        key = (ctx.execution_id, ctx.node_id)
        if config.wait and record.status not in FINAL_EXECUTION_STATES:
            self._children[key] = record.id  # from now on a stop of the node finds it
        if self._parent_stopped_here(ctx) or await self._parent_ended_elsewhere(ctx):
            # Stopped while the child was made (its cancel looked for it too early): the
            # child must not run on without it.
            self._children.pop(key, None)
            self._cancel_once_started(ctx.execution_id, ctx.node_id, starting)
            raise PermanentNodeError(_GONE, category=ErrorCategory.PERMANENT)
        link = {
            "child_execution_id": record.id,
            "workflow": definition.name,
            "version": definition.version,
        }
        if not config.wait:
            return {**link, "status": record.status.value}
        if record.status in FINAL_EXECUTION_STATES:
            stored = await engine.store.get_execution(record.id)
            if stored.status is not ExecutionStatus.COMPLETED:
                raise PermanentNodeError(
                    f"child execution {record.id} {stored.status.value}",
                    category=ErrorCategory.CHILD_FAILED,
                )
            return {**link, "status": stored.status.value, "result": stored.result}
        return Wait("child", data=link)

    async def _start(
        self, ctx: NodeContext, definition: DefinitionRecord, config: WorkflowConfig
    ) -> ExecutionRecord:
        key = bounded_key("child:", (ctx.idempotency_key,), ctx.idempotency_key)
        parent = (ctx.execution_id, ctx.node_id, ctx.attempt)
        siblings = max(ctx.map_items, 1)  # a map's items multiply the width of their level
        starts = self._starts()
        record, _made = await starts.start_or_find(
            definition, config.inputs, key, None, None, parent, siblings=siblings
        )
        return record

    def _parent_stopped_here(self, ctx: NodeContext) -> bool:
        """Whether the attempt starting a child is over in the parent driven here (it was
        cancelled, its execution too, since it was sent): read without suspending."""
        machine = self._engine.live_machine(ctx.execution_id)
        if machine is None:
            return False
        index = machine.plan.index.get(lineage.started_by_node(ctx.node_id))
        if index is None:
            return False
        run = machine.nodes[index]
        return run.attempt != ctx.attempt or run.state not in _STARTING

    async def _parent_ended_elsewhere(self, ctx: NodeContext) -> bool:
        """Whether the parent, not driven here (any more), ended; its process found the
        children its rows named then, and this one may have come too late for that."""
        if self._engine.is_live(ctx.execution_id):
            return False
        try:
            parent = await self._engine.store.get_execution(ctx.execution_id)
        except ExecutionNotFound:
            return True
        return parent.status in FINAL_EXECUTION_STATES

    async def await_child(self, child_id: str) -> Any:
        """Wait for a child started inside a map item; its outcome as a node output."""
        result = await self._engine.wait(child_id)
        if not result.ok:
            message = (result.error or {}).get("message", "")
            raise PermanentNodeError(
                f"child execution {child_id} {result.status.value}: {message}".rstrip(": "),
                category=ErrorCategory.CHILD_FAILED,
            )
        return {
            "child_execution_id": child_id,
            "status": result.status.value,
            "result": result.result,
        }

    def ending(self, child: ExecutionRecord, batch: CommitBatch) -> None:
        """The child's end is in ``batch``: with a parent this process does not drive, the
        parent's owner is asked in the same commit, so no crash can lose the end on its way."""
        parent, node = child.parent_execution_id, child.parent_node_id
        if parent is None or node is None or "[" in node or self._engine.is_live(parent):
            return  # a map item's child is awaited by the map itself, wherever it runs
        request = JournalRequest(child.id, parent, new_event_id(), self._ended(child), time.time())
        batch.requests.append(request)
        self._told.add(child.id)

    def finished(
        self,
        child: ExecutionRecord,
        status: ExecutionStatus,
        result: Any,
        error: dict[str, Any] | None,
    ) -> None:
        """A child ended here (committed): resolve the parent node waiting for it."""
        told = child.id in self._told
        self._told.discard(child.id)
        node = child.parent_node_id
        if self._resolve(child, status, result, error) or told or node is None or "[" in node:
            return
        # The parent was driven here when the end was committed, and was let go since (taken
        # over by another process): its new owner is asked now.
        task = asyncio.ensure_future(self._tell(child))
        self._telling.add(task)
        task.add_done_callback(self._telling.discard)

    async def ended_elsewhere(self, parent: str, child_id: Any) -> None:
        """A child that another process drove ended (its ``child_ended`` request on
        ``parent``, driven here): resolve the parent as if the child had ended here."""
        if not isinstance(child_id, str):
            return
        child = await self._engine.store.get_execution(child_id)
        if child.parent_execution_id == parent and child.status in FINAL_EXECUTION_STATES:
            self._resolve(child, child.status, child.result, child.error)

    def _resolve(
        self,
        child: ExecutionRecord,
        status: ExecutionStatus,
        result: Any,
        error: dict[str, Any] | None,
    ) -> bool:
        """Resolve the parent node waiting for ``child`` (now, or once it waits); False when
        this process does not drive the parent."""
        parent, node = child.parent_execution_id, child.parent_node_id
        if parent is None or node is None:
            return True
        self._children.pop((parent, node), None)
        parent_live = self._engine.live_machine(parent)
        if parent_live is None:
            return False
        index = parent_live.plan.index.get(node)
        if index is None:
            return True  # a map item's child: the map awaits it itself
        outcome = _outcome(
            child.id, node, int(child.labels.get("parent_attempt", 0)), status, result, error
        )
        # A duplicate (delivered here, and asked through the journal) changes nothing: the
        # machine ignores an outcome for a wait that is over.
        if parent_live.nodes[index].state is NodeState.WAITING:
            self._engine.post(parent, outcome)
        else:
            self._early[(parent, node)] = outcome  # delivered when the wait is committed
        return True

    def _ended(self, child: ExecutionRecord) -> dict[str, Any]:
        return {"verb": CHILD_ENDED, "child": child.id, "requested_by": self._engine.owner}

    async def _tell(self, child: ExecutionRecord) -> None:
        parent = child.parent_execution_id
        assert parent is not None
        signer = self._engine.audit.signer
        try:
            await self._engine.store.request_control(
                parent, new_event_id(), self._ended(child), time.time(), signer
            )
        except OrchestrionError as exc:  # its recovery will find the child ended
            logger.warning("execution %s not told its child %s ended: %s", parent, child.id, exc)

    def parent_waits(self, parent: str, node: str) -> None:
        """The parent node's wait is being committed: deliver an outcome that came early."""
        early = self._early.pop((parent, node), None)
        if early is not None:
            self._engine.post(parent, early)

    def nodes_stopped(self, actions: list[Action]) -> set[tuple[str, str, int]]:
        """A turn's commands stop nodes: cancel their children, before the loop acts on the
        rest. That may suspend (a Redis dispatcher's cancel does), and a cancel waiting in
        ``stopped`` resumes there: it must find these cancellations under way.

        The attempts stopped, (execution, node, attempt): one queued in the same turn (its
        execution started as it was cancelled) must not be sent, its handler would run with
        no one to stop it (a ``workflow`` node's child would be left behind)."""
        stopped: set[tuple[str, str, int]] = set()
        for live, command, _cause in actions:
            if isinstance(command, CancelNode) and not command.compensation:
                stopped.add((live.record.id, command.node, command.attempt))
                self._parent_stopped(live.record.id, command.node)
        return stopped

    def _parent_stopped(self, parent: str, node: str) -> None:
        """The parent node was cancelled or failed: cancel its child (or its map items')."""
        item_prefix = f"{node}["
        keys = [
            key
            for key in self._children
            if key[0] == parent and (key[1] == node or key[1].startswith(item_prefix))
        ]
        children = []
        for key in keys:
            child = self._children.pop(key)
            if self._engine.live_machine(child) is not None:
                self._engine.post(child, CancelRequested(time.time(), _STOPPED))
            else:
                children.append(child)  # driven by another process
        if children or not keys:  # not started here: the journal knows its children
            task = asyncio.ensure_future(self._cancel_elsewhere(parent, node, children))
            self._stopping.add(task)
            task.add_done_callback(self._stopping.discard)

    def _cancel_once_started(
        self, parent: str, node: str, starting: asyncio.Future[ExecutionRecord]
    ) -> None:
        async def cancel() -> None:
            try:
                record = await starting
            except Exception:  # nothing was started (the failure is the start's own)
                return
            await self._cancel_elsewhere(parent, node, [record.id])

        task = asyncio.ensure_future(cancel())
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _cancel_elsewhere(self, parent: str, node: str, known: list[str]) -> None:
        engine = self._engine
        try:
            found = known or await self._children_of(parent, node)
            for child in found:
                if engine.live_machine(child) is not None:
                    engine.post(child, CancelRequested(time.time(), _STOPPED))
                    continue
                if (await engine.store.get_execution(child)).status in FINAL_EXECUTION_STATES:
                    continue
                try:
                    await engine.cancel(child, _STOPPED)
                except OrchestrionError as exc:
                    logger.warning("child execution %s of %s not cancelled: %s", child, parent, exc)
        except OrchestrionError:
            logger.exception("cannot cancel the children of execution %s", parent)

    async def _children_of(self, parent: str, node: str) -> list[str]:
        """The children ``node`` of ``parent`` (or its map items) started: those its waits
        name, and the unfinished ones whose rows name it, their waits never committed."""
        unfinished = self._unfinished.get(parent)
        if unfinished is None:  # the nodes of a parent stopped together share this read
            unfinished = asyncio.ensure_future(lineage.unfinished_children(self._engine, parent))
            self._unfinished[parent] = unfinished
            unfinished.add_done_callback(lambda _: self._unfinished.pop(parent, None))
        found = await lineage.child_ids(self._engine, parent, node)
        for child in await asyncio.shield(unfinished):
            if lineage.started_by(child) == node and child.id not in found:
                found.append(child.id)
        return found

    async def stopped(self) -> None:
        """Wait until the children of stopped parent nodes are cancelled (grandchildren too)."""
        if asyncio.current_task() in self._stopping:
            return  # a child's cancel, itself one of these: the first caller waits for all
        while self._stopping:
            await asyncio.gather(*list(self._stopping), return_exceptions=True)

    async def close(self) -> None:
        """Give up on cancellations still under way (the engine is stopping)."""
        under_way: list[asyncio.Future[Any]] = [
            *self._stopping,
            *self._unfinished.values(),
            *self._telling,
        ]
        for task in under_way:
            task.cancel()
        await asyncio.gather(*under_way, return_exceptions=True)


_STOPPED = "parent execution stopped"
_GONE = "the parent node stopped while its child execution was being started"
_STARTING = frozenset({NodeState.QUEUED, NodeState.RUNNING})


def _outcome(
    child_id: str,
    node: str,
    attempt: int,
    status: ExecutionStatus,
    result: Any,
    error: dict[str, Any] | None,
) -> WaitResolved:
    """What a finished child tells the parent node that waits for it."""
    if status is ExecutionStatus.COMPLETED:
        output = {"child_execution_id": child_id, "status": status.value, "result": result}
        return WaitResolved(node, attempt, time.time(), output=output)
    message = (error or {}).get("message", "")
    return WaitResolved(
        node,
        attempt,
        time.time(),
        error=ErrorInfo(
            ErrorCategory.CHILD_FAILED,
            f"child execution {child_id} {status.value}: {message}".rstrip(": "),
        ),
    )
